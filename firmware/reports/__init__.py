"""X and Z reports (issue 14): totals.py computes a batch's figures from its journal
records (pure, portable), layout.py lays them out for the panel and for paper. The flows
that show and print them are firmware/flows/report_view.py; docs/close-of-day.md has the
rules."""

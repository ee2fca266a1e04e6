"""Who may do what: the one table every menu and flow asks (Terminal.can).

Least privilege: a cashier sells and takes payments, and asks a supervisor for
everything that gives money back or changes the terminal; a technician services the
terminal and sells nothing; a supervisor does what a cashier does and manages. Some
actions need, beyond the role, a second person: a supervisor other than the operator
acting (SECOND_PERSON, when [auth] second_person is on).
"""

CASHIER, SUPERVISOR, TECHNICIAN = "cashier", "supervisor", "technician"
SELLERS = (CASHIER, SUPERVISOR)
EVERYONE = (CASHIER, SUPERVISOR, TECHNICIAN)

# action -> the roles that may start it. A refund or void started by a cashier still
# asks a supervisor inside the flow (SupervisorFlow): starting is not approving.
TABLE = {
    "sale": SELLERS,             # amount, scanned items, QR and cash
    "refund": SELLERS,
    "void": SELLERS,
    "reprint": SELLERS,
    "reports": SELLERS,          # X, Z, settlement, the journal browser, shifts
    "shift": SELLERS,
    "stock": SELLERS,            # looking; changes ask a supervisor
    "members": SELLERS,          # look up and enrol; erasing asks a supervisor (mb_erase)
    "settings": EVERYONE,        # language, change own PIN, about
    "change_pin": EVERYONE,
    "mfa_enrol": (SUPERVISOR, TECHNICIAN),  # TOTP, for the roles [mfa] asks it of
    "operators": (SUPERVISOR,),
    "anomalies": (SUPERVISOR,),  # the limit and anomaly hits: they name other operators  # the list of operators, add, edit, disable, reset PIN
    "policy": (SUPERVISOR, TECHNICIAN),     # offline policy, limits (reading)
    "diagnostics": (SUPERVISOR, TECHNICIAN),
    "service": (TECHNICIAN,),    # host certificate alarm, keys, updates
    "offline": EVERYONE,         # upload now; the export asks a supervisor
    # issue 17: the faults every operator meets, in words (firmware/flows/troubleshoot.py);
    # the printed report, network settings and the factory reset (a supervisor approves
    # inside) are the service side
    "troubleshoot": EVERYONE,
    "diag_report": (SUPERVISOR, TECHNICIAN),
    "network": (TECHNICIAN,),
    "factory_reset": (TECHNICIAN,),
    "logout": EVERYONE,
}

# what a SupervisorFlow is asked for (its purpose, a message id) that needs a supervisor
# other than the operator acting: money back, a price below the shelf's, people,
# limits, records leaving the terminal, a second copy of a closed day
SECOND_PERSON = (
    "menu_refund", "menu_void", "ct_sup_price", "ct_sup_discount", "op_manage",
    "gate_purpose", "off_export", "rep_z_reprint",
    "mb_erase",                  # a member's data erased (issue 16)
)


def allowed(role, action):
    """True when an operator of role may start action (an unknown action: nobody)."""
    roles = TABLE.get(action)
    return roles is not None and role in roles


def needs_second_person(purpose):
    return purpose in SECOND_PERSON

"""The terminal core: the flow stack, the session, the status bar and the timers.

It owns no hardware. The composition root (board/) hands it drivers that implement
the small interfaces below and routes their events to on_key, on_printer_event and
on_device_lost (and a card reader's to on_swipe, a barcode scanner's to on_scan and
on_scan_error).

  display.show(screen)                  firmware.ui.screen.Screen
  printer.print(receipt) -> job id      firmware.ui.receipt.Receipt; .state; query_status()
  buzzer.beep(name)                     key | ok | error | alert
  led.on() / led.off() / led.blink(on_ms, off_ms, times)
  system.local_time() -> (y, mo, d, h, mi, s); system.clock_synced() -> bool
  system.battery() -> None | (percent, charging); system.random_bytes(n)
  watchdog.ready() / watchdog.ping() / watchdog.status(text)   (systemd; may be None)

Storage faults (firmware/core/store.py): the drivers report every database error about
the medium to storage_fault(). The terminal then takes nothing new (a screen that says
why replaces whatever is not a payment under way), keeps what is stored, and tries the
card again on a timer (probe_storage, set by the board) until it takes writes; then
it resolves what the fault left (recover) and goes back to work by itself.
"""
from firmware.core import events
from firmware.core.store import CORRUPT, is_fault
from firmware.ui import i18n
from firmware.security.auth import Auth, Policy
from firmware.ui.screen import Screen, Status

LANG_SETTING = "ui.language"
# how long to wait before trying a full or failing card again (the last repeats)
FAULT_RETRY_MS = (2000, 5000, 10000, 30000)


class Terminal:
    def __init__(self, reactor, config, store, system, display=None, printer=None,
                 buzzer=None, led=None, watchdog=None, selftests=None, auth_iterations=None,
                 pin_hasher=None):
        self.reactor = reactor
        self.config = config
        self.store = store
        self.system = system
        self.display = display
        self.printer = printer
        self.buzzer = buzzer
        self.led = led
        self.watchdog = watchdog
        # alias -> (ok, detail): what the composition root found when it built drivers.
        # Shared, not copied: parts built after the terminal add their results to it.
        self.selftests = selftests if selftests is not None else {}
        self.fault = None               # the StorageFault that stops service, or None
        self.probe_storage = None       # callable(): raises a StorageFault while it lasts
        self.storage_report = []        # (what, database, n) the boot checks found
        self._fault_timer = None
        self._fault_tries = 0
        try:
            lang = store.get_setting(LANG_SETTING)
        except Exception as exc:        # a store that cannot be read: shown after boot
            if not is_fault(exc):
                raise
            self.fault = exc
            lang = None
        self.t = i18n.Translator(lang or config["ui"]["language"])
        kwargs = {}
        if auth_iterations:
            kwargs["iterations"] = auth_iterations
        self.auth = Auth(store, reactor.clock, system.random_bytes, hasher=pin_hasher,
                         policy=Policy.from_config(config.get("auth")), utc=system.utc_time,
                         **kwargs)
        # the first run ("create a supervisor") only on a terminal that never had data:
        # the board says (board/datadir.py); on_in_service records that it now has
        self.first_run_ok = True
        self.on_in_service = None
        self.flows = []
        self.operator = None
        self.printer_state = printer.state if printer is not None else "missing"
        self.link_state = "none" if not config["host"]["address"] else "down"
        self.pending = 0
        self.screen = None
        self.last_key = None
        self.keys_seen = 0
        self.last_action_ms = reactor.clock()   # a key, swipe, scan or card: someone is here
        self._settlement = None
        self._logout_timer = None
        self._tick_timer = None
        self._wd_timer = None
        self.payments = None            # firmware.payments.service.Payments, set by the board
        self.catalogue = None           # firmware.retail.catalogue's interface, set by the board
        self.cl_leds = []               # the four contactless status lights (GPIO), if any
        self.cl_lights = 0              # how many of them are on (EMV Book A, option 1)
        self.unprinted = []             # approvals whose receipt a crash kept from paper
        self._trust_notice_due = False  # the host certificate notice waits for a person
        self.on_screen = None           # observers (simulator, control socket)
        self.on_receipt = None

    # -- start ----------------------------------------------------------------
    def start(self):
        from firmware.flows.boot import BootFlow
        self._schedule_tick()
        if self.payments is not None:
            try:
                self.unprinted = self.payments.recover()
                from firmware.retail import loyalty, stock
                stock.catch_up(self)        # a sale approved just before a crash
                loyalty.catch_up(self)      # and the member's points of it
                self._recover_qr()
                self.settlement().recover()  # a batch the host closed before the Z
                self.payments.sign_on()
            except Exception as exc:    # a card that fails at start: shown after boot
                if not is_fault(exc):
                    raise
                self.storage_fault(exc)
        if self.fault is not None:
            self._arm_fault_retry()
        if self.watchdog is not None:
            self.watchdog.ready()
            self._ping_watchdog()
        self.push(BootFlow(self))

    def _ping_watchdog(self):
        self.watchdog.ping()
        interval = self.watchdog.interval_ms() if hasattr(self.watchdog, "interval_ms") else 0
        if interval:
            self._wd_timer = self.reactor.call_later(interval, self._ping_watchdog)

    # -- flows ----------------------------------------------------------------
    def current(self):
        return self.flows[-1] if self.flows else None

    def push(self, flow):
        self.flows.append(flow)
        flow.start()

    def replace_all(self, flow):
        """Drop every running flow (logout, boot done) and start flow alone."""
        while self.flows:
            self.flows.pop().stop()
        self.push(flow)
        self.flows_changed()

    def flow_finished(self, flow, result):
        if flow in self.flows:
            self.flows.remove(flow)
        if hasattr(flow, "holds_uploads"):
            self.flows_changed()
        parent = self.current()
        if self.fault is not None and parent is not None and parent.NAME != "storage_fault" \
                and not self._busy():
            self.go_home()              # the payment that held it up is over: say why now
            return
        if parent is not None and hasattr(parent, "child_done"):
            nxt = parent.child_done(flow, result)
            if parent.finished:
                return
            if nxt is not None:
                parent.goto(nxt)
            else:
                parent.render()
        elif parent is not None:
            parent.render()
        else:
            self.go_home()

    def go_home(self):
        """Where a person lands when nothing else runs: idle when logged in, else login;
        the storage fault while there is one."""
        from firmware.flows.login import LoginFlow
        from firmware.flows.idle import IdleFlow
        if self.fault is not None:
            from firmware.flows.storage import StorageFaultFlow
            self.replace_all(StorageFaultFlow(self))
        elif self.operator is not None:
            self.replace_all(IdleFlow(self))
        else:
            self.replace_all(LoginFlow(self))

    # -- session --------------------------------------------------------------
    def login(self, op):
        self.operator = op
        self.store.audit("login", op["id"], op["role"])
        self._arm_logout()
        settlement = self.settlement()
        if settlement is not None and settlement.z_to_print is not None:
            self.reactor.call_soon(self._resumed_z)
        if self._trust_notice_due:      # raised while nobody was logged in
            self.reactor.call_soon(self.trust_notice)

    def logout(self, reason="operator"):
        op = self.operator
        if op is not None:
            self.store.audit("logout", op["id"], reason)
        self.operator = None
        self._disarm_logout()
        self.go_home()
        if op is not None and self.fault is None:
            from firmware.flows.shift import logout_notice
            logout_notice(self, op)     # allowed with a shift open: the notice says so

    def role(self):
        return self.operator["role"] if self.operator else None

    def can(self, action):
        """May the operator logged in start action (firmware/security/permissions.py)?"""
        from firmware.security import permissions
        return permissions.allowed(self.role(), action)

    def refuse(self, action, title):
        """A person reached for what their role may not do: said, audited, never done."""
        from firmware.flows.notice import NoticeFlow
        self.beep("error")
        who = self.operator["id"] if self.operator else ""
        self.store.audit("refused", who, "%s %s" % (action, self.role() or "-"))
        self.push(NoticeFlow(self, self.t(title), [self.t("not_allowed")]))

    # -- settlement -----------------------------------------------------------
    def settlement(self):
        """The settlement service (firmware/payments/settlement.py), made on first use;
        it makes each closed batch's Z through firmware/flows/report_view.py."""
        if self._settlement is None and self.payments is not None:
            from firmware.payments.settlement import Settlement
            from firmware.flows.report_view import make_z
            self._settlement = Settlement(self, lambda batch, print_it=True, settled=None:
                                          make_z(self, batch, print_it, settled))
        return self._settlement

    def _resumed_z(self):
        """A restart finished closing a batch the host had closed: its Z on paper now,
        and a notice saying so."""
        doc = self.settlement().take_z_to_print()
        if doc is None or self.operator is None:
            return
        from firmware.flows.report_view import print_z
        from firmware.flows.notice import NoticeFlow
        print_z(self, doc)
        self.push(NoticeFlow(self, self.t("rep_settle"),
                             [self.t("settle_closed", n=doc.get("batch")),
                              self.t("settle_resumed"), self.t("settle_z_printing")],
                             alert="ok"))

    def idle_for(self, ms):
        """Nothing but the idle or login screen runs and nobody has touched the
        terminal for ms: an automatic settlement may take it."""
        if self.fault is not None or not self.flows:
            return False
        for flow in self.flows:
            if flow.finished or flow.NAME not in ("idle", "login") or flow.state not in ("idle", "id"):
                return False
        return self.reactor.clock() - self.last_action_ms >= ms

    def _settle_tick(self):
        """Once a minute: [settlement] auto_at, when it is time and the terminal idle."""
        settlement = self.settlement()
        if settlement is None:
            return
        from firmware.payments.settlement import IDLE_MS
        try:
            if not settlement.auto_due() or not self.idle_for(IDLE_MS):
                return
            settlement.auto_started()
        except Exception as exc:
            if not is_fault(exc):
                raise
            return
        from firmware.flows.settle import SettleFlow
        self.push(SettleFlow(self, auto=True))

    def _arm_logout(self):
        self._disarm_logout()
        if self.operator is not None:
            self._logout_timer = self.reactor.call_later(
                self.config["ui"]["idle_logout_s"] * 1000, self._auto_logout)

    def _disarm_logout(self):
        if self._logout_timer is not None:
            self._logout_timer.cancel()
            self._logout_timer = None

    def _auto_logout(self):
        self._logout_timer = None
        flow = self.current()
        if flow is not None and getattr(flow, "BUSY", False):
            self._arm_logout()      # never log out under a payment in progress
            return
        self.logout("idle")

    def today(self):
        """(year, month) for expiry checks, None while the clock is not trustworthy."""
        if not self.system.clock_synced():
            return None
        return self.system.local_time()[:2]

    def on_swipe(self, track1, track2):
        """A magnetic stripe was read. Only a flow waiting for a card gets it."""
        self.last_action_ms = self.reactor.clock()
        flow = self.current()
        if flow is not None and flow.dispatch(events.Event("swipe", track1=track1, track2=track2)):
            return
        self.beep("error")

    def on_scan(self, code, source=""):
        """A barcode was read: code as the scanner sent it (drivers/scanner.py). The
        flow that takes it checks it (firmware/retail/barcode.py); with no flow taking
        scans, the error tone and nothing else."""
        self.last_action_ms = self.reactor.clock()
        if self.operator is not None:
            self._arm_logout()          # someone is at the terminal
        flow = self.current()
        if flow is not None and flow.dispatch(events.Event(events.SCAN, code=code, source=source)):
            return
        self.beep("error")

    def on_scan_error(self, reason):
        """The scanner sent something that is no code (garbage, too long, cut short):
        the error tone always; a flow that is scanning shows "scan_failed" and
        "scan_again" for it."""
        self.beep("error")
        flow = self.current()
        if flow is not None:
            flow.dispatch(events.Event(events.SCAN_ERROR, reason=reason))

    def on_card_event(self, kind, atr=None):
        """The chip reader: reader_ready | reader_lost | inserted | tapped | removed."""
        if kind == "reader_ready":
            self.selftests["chip"] = (True, "reader %s" % atr)
            return
        if kind == "reader_lost":
            if self.selftests.get("chip", (True,))[0] is not False:
                self.on_device_lost("chip", atr or "reader lost")
            return
        name = {"inserted": "card_inserted", "tapped": "card_tapped",
                "removed": "card_removed"}.get(kind)
        flow = self.current()
        if name is None or flow is None:
            return
        if not flow.dispatch(events.Event(name, atr=atr)) and name != "card_removed":
            self.beep("error")      # a card where none is wanted

    def on_swipe_error(self, reason):
        flow = self.current()
        if flow is None or not flow.dispatch(events.Event("swipe_error", reason=reason)):
            self.beep("error")

    def on_link(self, state):
        self.link_state = state
        self.refresh()

    def on_host_untrusted(self, kind, detail):
        """The host's certificate failed its check (drivers/hostlink.py): not a link
        down. Offline approval stops until a technician clears the alarm (Settings);
        the alert tone, and a notice once no payment holds the screen (the payment's
        own result says why it was not charged)."""
        if self.payments is None:
            return
        y, mo, d, h, mi, s = self.system.utc_time()
        utc = "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s)
        if not self.system.clock_synced():
            detail += " (the terminal's clock is not synchronised)"
        if not self.payments.trust.seen(kind, utc, detail):
            return
        self.beep("alert")
        self._trust_notice_due = True
        self.reactor.call_soon(self.trust_notice)

    def trust_notice(self):
        """The host certificate notice, when one is due and a person can see it: not
        over a payment's screens (it comes when the payment's flow ends)."""
        paying = [f for f in self.flows if hasattr(f, "holds_uploads") and not f.finished]
        if not self._trust_notice_due or self.operator is None or paying \
                or self.fault is not None:
            self.refresh()
            return
        self._trust_notice_due = False
        from firmware.flows.notice import NoticeFlow
        state = self.payments.trust.state() or {"kind": "other"}
        self.push(NoticeFlow(self, self.t("trust_title"),
                             [self.t("reason_host_untrusted"), self.t("trust_" + state["kind"]),
                              self.t("trust_no_offline")]))

    # -- storage faults -------------------------------------------------------
    def _busy(self):
        for flow in self.flows:
            if not flow.finished and getattr(flow, "BUSY", False):
                return True
        return False

    def storage_fault(self, fault):
        """A database could not record. Nothing new is taken from here on: the fault's
        screen replaces what is on show, except a payment under way, which ends first
        (with the outcome the payments service could give it)."""
        first = self.fault is None
        if self.fault is None or fault.kind == CORRUPT:
            self.fault = fault
        self.selftests["storage"] = (False, str(fault))
        if first and getattr(fault, "part", "store") != "store":
            # another database failed: the store can still say when (docs/audit.md); never
            # for the store's own fault, whose audit line would fail and call here again
            from firmware.core.store import fault_code
            self.store.audit("storage_fault", "", "%s %s" % (fault_code(fault), fault))
        self._arm_fault_retry()
        current = self.current()
        if current is None or current.NAME in ("boot", "storage_fault") or self._busy():
            if current is not None and current.NAME == "storage_fault":
                current.render()
            return
        self.beep("alert")
        self.go_home()

    def _arm_fault_retry(self):
        if self._fault_timer is not None or self.fault is None:
            return
        if self.fault.kind == CORRUPT or self.probe_storage is None:
            return                      # a damaged file does not mend itself: a technician
        delay = FAULT_RETRY_MS[min(self._fault_tries, len(FAULT_RETRY_MS) - 1)]
        self._fault_timer = self.reactor.call_later(delay, self.retry_storage)

    def retry_storage(self):
        """Try the card again (the timer, or ENTER on the fault screen)."""
        if self._fault_timer is not None:
            self._fault_timer.cancel()
            self._fault_timer = None
        if self.fault is None:
            return True
        if getattr(self.fault, "standing", False):
            # keys that do not open, a PIN key state lost, operators gone: no retry can
            # mend these; a technician must (the screen says so, with the code)
            self.refresh()
            return False
        self._fault_tries += 1
        try:
            if self.probe_storage is not None:
                self.probe_storage()
            if self.payments is not None:
                self.unprinted = self.payments.recover()
        except Exception as exc:
            if not is_fault(exc):
                raise
            if exc.kind == CORRUPT:
                self.fault = exc
            self._arm_fault_retry()
            self.refresh()
            return False
        self.fault = None
        self._fault_tries = 0
        self.selftests["storage"] = (True, "recovered")
        self.store.audit("storage_recovered", "", "")
        if self.payments is not None:
            self.payments.forwarder.kick()
            from firmware.retail import loyalty, stock
            stock.catch_up(self)            # stock a full card kept from moving
            loyalty.catch_up(self)          # and points it kept from members.db
            self._recover_qr()              # an answer the full card could not keep
        current = self.current()
        if current is not None and current.NAME == "storage_fault":
            self.go_home()
        return True

    def _recover_qr(self):
        """QR orders, refunds and voids the journal still has in flight (a crash, or an
        answer a full card could not keep): queried, kept, cancelled or asked again."""
        if self.payments.qr is not None:
            self.payments.qr.recover()
            self.payments.qr_refunds.recover()

    # -- store and forward ----------------------------------------------------
    def uploads_held(self):
        """A payment is being taken: the forwarder sends nothing new meanwhile."""
        for flow in self.flows:
            if hasattr(flow, "holds_uploads") and not flow.finished and flow.holds_uploads():
                return True
        return False

    def queue_alert(self):
        """A queued payment needs a person (declined after upload, unreadable): the
        alert tone, and a notice unless a payment is on the screen; the idle screen
        keeps listing it until a supervisor acknowledges it (Offline menu)."""
        self.beep("alert")
        if self.operator is None or self.uploads_held():
            self.refresh()
            return
        from firmware.flows.notice import NoticeFlow
        current = self.current()
        if current is not None and current.NAME == "notice" and getattr(current, "queue", False):
            current.render()
            return
        notice = NoticeFlow(self, self.t("queue_alert_title"),
                            [self.t("queue_alert_1"), self.t("queue_alert_2")])
        notice.queue = True
        self.push(notice)

    def flows_changed(self):
        """A flow ended: uploads held for it may go now."""
        if self.payments is not None and not self.uploads_held():
            self.payments.forwarder.kick()
        if self._trust_notice_due:      # after the payment's own flows have unwound
            self.reactor.call_soon(self.trust_notice)

    # -- language -------------------------------------------------------------
    def set_language(self, lang):
        self.t.set_language(lang)
        self.store.set_setting(LANG_SETTING, lang)

    # -- events in ------------------------------------------------------------
    def on_key(self, name):
        self.last_key = name
        self.keys_seen += 1
        self.last_action_ms = self.reactor.clock()
        if self.operator is not None:
            self._arm_logout()
        if self.buzzer is not None:
            self.buzzer.beep("key")
        flow = self.current()
        if flow is not None:
            flow.dispatch(events.key(name))

    def on_printer_event(self, ev):
        if ev.kind == events.PRINTED and self.payments is not None:
            self.payments.printed(ev.get("job"))
        if ev.kind == events.PRINTER:
            self.printer_state = ev.get("state")
            self.refresh()
        flow = self.current()
        if flow is not None:
            flow.dispatch(ev)

    def on_device_lost(self, alias, reason):
        self.selftests[alias] = (False, reason)
        self.store.audit("device_lost", "", "%s: %s" % (alias, reason))
        if alias == "printer":
            self.printer_state = "missing"
        if self.buzzer is not None:
            self.buzzer.beep("alert")
        flow = self.current()
        ev = events.Event(events.DEVICE_LOST, device=alias, reason=reason)
        if flow is None or not flow.dispatch(ev):
            from firmware.flows.notice import NoticeFlow
            self.push(NoticeFlow(self, self.t("dev_lost_title"),
                                 [self.t("dev_" + alias), self.t("check_" + alias)]))

    # -- output ---------------------------------------------------------------
    def status(self):
        y, mo, d, h, mi, s = self.system.local_time()
        batt = self.system.battery()
        return Status(clock="%02d:%02d" % (h, mi), synced=self.system.clock_synced(),
                      link=self.link_state, battery=batt[0] if batt else None,
                      charging=batt[1] if batt else False, pending=self.pending,
                      printer=self.printer_state)

    def show(self, title="", lines=None, footer="", selected=-1, big="", alert=None,
             masked="", status=True, top=-1, qr=""):
        """qr: a text (a merchant's code URL) drawn as a QR code beside the rows
        (drivers/display.py; docs/hardware.md gives its limits)."""
        screen = Screen(title, lines, footer, selected, big, alert,
                        self.status() if status else None, masked, top, qr=qr)
        self.screen = screen
        if self.display is not None:
            self.display.show(screen)
        if self.on_screen is not None:
            self.on_screen(screen)
        return screen

    def refresh(self):
        """Draw the current flow again (the status bar changed)."""
        flow = self.current()
        if flow is not None and not flow.finished:
            flow.render()

    def print_receipt(self, receipt):
        if self.printer is None:
            return None
        job = self.printer.print(receipt)
        if self.on_receipt is not None:
            self.on_receipt(receipt)
        return job

    def set_cl_lights(self, n):
        """The contactless status lights (EMV Contactless Book A, option 1): 0 off,
        1 ready for a card, 2 card seen, 3 processing, 4 read, the card may go."""
        self.cl_lights = n
        for i, led in enumerate(self.cl_leds):
            if i < n:
                led.on()
            else:
                led.off()

    def cl_indicator(self):
        """The same four lights on the screen: filled for on."""
        return " ".join("●" if i < self.cl_lights else "○" for i in range(4))

    def beep(self, name):
        if self.buzzer is not None:
            self.buzzer.beep(name)

    # -- the clock ------------------------------------------------------------
    def _schedule_tick(self):
        # Wake once a minute, on the minute, to redraw the clock: nothing in between.
        s = self.system.local_time()[5]
        self._tick_timer = self.reactor.call_later((60 - s) * 1000 + 50, self._tick)

    def _tick(self):
        self.refresh()
        self._schedule_tick()
        if self.payments is not None:
            self._settle_tick()

    def stop(self):
        for timer in (self._logout_timer, self._tick_timer, self._wd_timer, self._fault_timer):
            if timer is not None:
                timer.cancel()
        while self.flows:
            self.flows.pop().stop()

"""Flows as explicit state tables.

A flow's STATES table names, for every state, what it shows on entry, how long it may
wait, and which handler each trigger runs. Handlers return the next state's name, or
None to stay. A flow never blocks and never touches hardware: it asks the terminal to
show, print, beep, or start another flow.

Triggers, looked up in this order for a key: the key's own name ("ENTER", "F2"),
"digit" for 0-9 and 00, then "key" for any other key. Other events use their kind
("printer", "device_lost"), and "timeout" when the state's time runs out. A state
with no "timeout" handler runs the flow's cancel() when its time is up, so every state
ends somewhere safe.
"""
from firmware.core import events, keys


class Flow:
    NAME = "flow"
    INITIAL = ""
    STATES = {}
    DEFAULT_TIMEOUT = "menu_timeout_s"

    def __init__(self, term):
        self.term = term
        self.t = term.t
        self.state = None
        self._timer = None
        self.finished = False

    # -- driving --------------------------------------------------------------
    def start(self):
        self.goto(self.INITIAL)

    def goto(self, state):
        if state not in self.STATES:
            raise ValueError("%s: no state %r" % (self.NAME, state))
        self._cancel_timer()
        self.state = state
        spec = self.STATES[state]
        ms = self._timeout_ms(spec.get("timeout", self.DEFAULT_TIMEOUT))
        if ms:
            self._timer = self.term.reactor.call_later(ms, self._timed_out, state)
        enter = spec.get("enter")
        nxt = getattr(self, enter)() if enter else None
        if self.finished:
            return
        if nxt is not None and nxt != state:
            self.goto(nxt)
        elif self.state == state and self.on_top():
            self.render()

    def _timeout_ms(self, value):
        if value is None:
            return 0
        if isinstance(value, str):
            return self.term.config["ui"][value] * 1000
        return value

    def _timed_out(self, state):
        self._timer = None
        if self.state != state or self.finished:
            return
        if not self.on_top():
            # a flow it opened has the person (Settings over the home menu): this one
            # waits its full time again rather than ending under it
            self.restart_timer()
            return
        self.dispatch(events.Event(events.TIMEOUT))

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def restart_timer(self):
        """Activity in the state (a key) gives the person the full time again."""
        if self.state is None or self.finished:
            return
        self._cancel_timer()
        ms = self._timeout_ms(self.STATES[self.state].get("timeout", self.DEFAULT_TIMEOUT))
        if ms:
            self._timer = self.term.reactor.call_later(ms, self._timed_out, self.state)

    def handler_for(self, ev):
        on = self.STATES[self.state].get("on", {})
        if ev.kind == events.KEY:
            name = ev.get("key")
            if name in on:
                return on[name]
            if keys.is_digit(name) and "digit" in on:
                return on["digit"]
            return on.get("key")
        return on.get(ev.kind)

    def dispatch(self, ev):
        """Run the handler for ev; True when the state table had one."""
        if self.finished or self.state is None:
            return False
        name = self.handler_for(ev)
        if name is None:
            if ev.kind == events.TIMEOUT:
                self.cancel()
                return True
            return False
        if ev.kind == events.KEY:
            self.restart_timer()
        nxt = getattr(self, name)(ev)
        if self.finished:
            return True
        if nxt is not None:
            self.goto(nxt)      # naming the current state enters it afresh
        elif self.on_top():
            self.render()       # a handler that started a child flow leaves the screen to it
        return True

    def on_top(self):
        return self.term.current() is self

    # -- ending ---------------------------------------------------------------
    def finish(self, result=None):
        self._cancel_timer()
        self.finished = True
        self.term.flow_finished(self, result)

    def cancel(self, ev=None):
        """Back out: the safe end of every state unless a flow says otherwise."""
        self.finish(None)

    def stop(self):
        """The terminal is replacing this flow (logout, power key): drop timers."""
        self._cancel_timer()
        self.finished = True

    # -- drawing --------------------------------------------------------------
    def render(self):
        """Show the current state. Flows override; the default shows nothing new."""

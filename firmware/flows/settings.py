"""Settings: language and one's own PIN for everyone; operators for supervisors; the
policies for supervisors and technicians; what this terminal is."""
from firmware.ui import i18n
from firmware.flows.common import MenuFlow
from firmware.core.version import VERSION


class SettingsFlow(MenuFlow):
    NAME = "settings"
    TITLE = "settings_title"

    # message id, method, action in firmware/security/permissions.py: an entry a role
    # may not use is not shown to it (a cashier sees no other operator)
    ENTRIES = (
        (None, "language", "settings"),
        ("set_change_pin", "change_pin", "change_pin"),
        ("set_operators", "operators", "operators"),
        ("off_policy", "offline_policy", "policy"),
        ("set_about", "about", "settings"),
        ("set_host_trust", "host_trust", "policy"),
        ("set_mfa_enrol", "mfa_enrol", "mfa_enrol"),
        ("set_limits", "limits", "policy"),
        ("net_title", "network", "network"),                # issue 17
        ("fr_title", "factory_reset", "factory_reset"),
        ("set_update", "update", "service"),     # issue 17: signed updates from USB
    )

    def update(self):
        from firmware.flows.update import UpdateFlow
        self.term.push(UpdateFlow(self.term))
        return None

    def network(self):
        from firmware.flows.network import NetworkFlow
        self.term.push(NetworkFlow(self.term))
        return None

    def factory_reset(self):
        from firmware.flows.factory_reset import FactoryResetFlow
        self.term.push(FactoryResetFlow(self.term))
        return None

    def entries(self):
        other = "zh" if self.t.lang == "en" else "en"
        return [(msg or "set_language_" + other, method) for msg, method, action in self.ENTRIES
                if self.term.can(action)]

    def change_pin(self):
        from firmware.flows.pin_change import PinChangeFlow
        self.term.push(PinChangeFlow(self.term, self.term.operator))
        return None

    def host_trust(self):
        """The host certificate alarm: what was seen, and a technician's clearing."""
        if not self.term.payments.trust.untrusted():
            return self.say(self.t("trust_ok"))
        from firmware.flows.hosttrust import HostTrustFlow
        self.term.push(HostTrustFlow(self.term))
        return None

    def limits(self):
        """The [limits] in words (docs/limits.md), scrolled with UP/DOWN."""
        from firmware.flows.anomaly_view import limit_lines
        return self.say(*limit_lines(self.term))

    def offline_policy(self):
        from firmware.flows.offline import policy_lines
        return self.say(*policy_lines(self.term))

    def language(self):
        new = "zh" if self.t.lang == "en" else "en"
        self.term.set_language(new)
        who = self.term.operator["id"] if self.term.operator else ""
        self.term.store.audit("language", who, new)
        return self.say(self.t("language_now", name=i18n.LANGUAGE_NAMES[new]))

    def mfa_enrol(self):
        from firmware.flows.mfa import MfaEnrollFlow
        self.term.push(MfaEnrollFlow(self.term, self.term.operator))
        return None

    def operators(self):
        from firmware.flows.operators import OperatorsFlow
        self.term.push(OperatorsFlow(self.term))
        return None

    def about(self):
        cfg = self.term.config
        from firmware.flows.boot import key_root_word
        rows = ["handpos " + VERSION, "TID " + cfg["terminal"]["id"],
                "MID " + cfg["terminal"]["merchant_id"], cfg["terminal"]["merchant_name"]]
        if getattr(self.term, "key_root", None) is not None:
            rows.append(self.t("dev_keys") + ": " + key_root_word(self.term))
        return self.say(*rows)

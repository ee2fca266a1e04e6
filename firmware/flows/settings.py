"""Settings: language for everyone; operators for supervisors; what this terminal is."""
from firmware.ui import i18n
from firmware.flows.common import MenuFlow
from firmware.flows.operator import NewOperatorFlow
from firmware.core.version import VERSION


class SettingsFlow(MenuFlow):
    NAME = "settings"
    TITLE = "settings_title"

    def entries(self):
        other = "zh" if self.t.lang == "en" else "en"
        return [("set_language_" + other, "language"), ("set_add_operator", "add_operator"),
                ("set_operators", "operators"), ("off_policy", "offline_policy"),
                ("set_about", "about"), ("set_host_trust", "host_trust")]

    def host_trust(self):
        """The host certificate alarm: what was seen, and a technician's clearing."""
        if not self.term.payments.trust.untrusted():
            return self.say(self.t("trust_ok"))
        from firmware.flows.hosttrust import HostTrustFlow
        self.term.push(HostTrustFlow(self.term))
        return None

    def offline_policy(self):
        from firmware.flows.offline import policy_lines
        return self.say(*policy_lines(self.term))

    def language(self):
        new = "zh" if self.t.lang == "en" else "en"
        self.term.set_language(new)
        who = self.term.operator["id"] if self.term.operator else ""
        self.term.store.audit("language", who, new)
        return self.say(self.t("language_now", name=i18n.LANGUAGE_NAMES[new]))

    def add_operator(self):
        if self.term.role() != "supervisor":
            self.term.beep("error")
            return self.say(self.t("set_add_operator"), self.t("not_allowed"))
        self.term.push(NewOperatorFlow(self.term))
        return None

    def operators(self):
        rows = []
        for op in self.term.store.list_operators():
            rows.append("%s %s" % (op["id"], self.t("role_" + op["role"])))
        return self.say(*rows)

    def about(self):
        cfg = self.term.config
        from firmware.flows.boot import key_root_word
        rows = ["handpos " + VERSION, "TID " + cfg["terminal"]["id"],
                "MID " + cfg["terminal"]["merchant_id"], cfg["terminal"]["merchant_name"]]
        if getattr(self.term, "key_root", None) is not None:
            rows.append(self.t("dev_keys") + ": " + key_root_word(self.term))
        return self.say(*rows)

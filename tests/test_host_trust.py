"""A host certificate that fails its check (issue 11 item 6): never a plain "Host
unreachable", never an offline approval.

A man in the middle answers the terminal's TLS handshake with a certificate of his
own. Taken for a link down, every card payment would then be approved offline. Here the
real host simulator (tools/host/hostsim.py, TLS with the test CA it makes) is the
acquirer; the man in the middle is a second host simulator with a CA of its own, put
in the path by switching the fault proxy's upstream. Certificates from the right CA
but for another host name, or out of date, come from a CA this file makes (the host
simulator keeps no CA key), served by a host simulator too.

What a person sees is asserted: the sale's words, the alarm's tone and notice, the idle
screen, the technician's clearing in Settings; and what the books say: nothing reached
anybody, nothing was queued, the audit log names each step.
"""
import datetime
import ipaddress
import os

import pytest

from drivers.hostlink import HostLink, Stan, make_client_context, transmission_time
from firmware.core.reactor import Reactor
from firmware.payments.hosttrust import SETTING
from tools.cards.vcard import CardRemoved, VirtualCard
from tools.host.hostsim import HostSim

TID = "HP000001"
SWIPE_OK = {"entry_modes": ["chip", "tap", "swipe"]}
TECH_ID, TECH_PIN = "7", "4826"
KIND_WORDS = {"ca": "Not the pinned CA", "name": "Wrong host name",
              "expired": "Expired/not yet valid"}


# -- certificates ----------------------------------------------------------------------

class Pki:
    """A test CA whose key is kept, to sign the certificates a host should not have."""

    def __init__(self, directory):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "handpos trust test CA")])
        cert = (x509.CertificateBuilder()
                .subject_name(self.name).issuer_name(self.name)
                .public_key(self.key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(self.now - datetime.timedelta(days=30))
                .not_valid_after(self.now + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.ca = self._write("ca.pem", cert)

    def _write(self, name, cert=None, key=None):
        from cryptography.hazmat.primitives import serialization
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            if cert is not None:
                f.write(cert.public_bytes(serialization.Encoding.PEM))
            else:
                f.write(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        return path

    def issue(self, label, names=("localhost",), ips=("127.0.0.1",), days=(-1, 30)):
        """(cert, key) files of a server certificate valid from now + days[0] to now +
        days[1], for the DNS names and IP addresses given."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        key = ec.generate_private_key(ec.SECP256R1())
        alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a))
                                                  for a in ips]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(self.now + datetime.timedelta(days=days[0]))
                .not_valid_after(self.now + datetime.timedelta(days=days[1]))
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        return self._write(label + ".pem", cert), self._write(label + ".key", key=key)


# what each impostor's certificate is, from the pinned CA (the "ca" one has its own CA)
CERTS = {"good": {}, "name": {"names": ("acquirer.example",), "ips": ()},
         "expired": {"days": (-60, -1)}, "early": {"days": (1, 60)}}


@pytest.fixture
def pki(tmp_path):
    return Pki(str(tmp_path / "pki"))


@pytest.fixture
def hosts(tmp_path):
    """hosts(label, cert=None): a host simulator over TLS on loopback serving the given
    (cert, key), or its own test CA's certificate when cert is None."""
    made = []

    def make(label, cert=None):
        sim = HostSim(str(tmp_path / ("host-" + label)), tls=True, slow_ms=60000,
                      log=lambda *a: None)
        if cert is not None:
            sim.tls = dict(sim.tls, cert=cert[0], key=cert[1])
        host, port = sim.start("127.0.0.1", 0)
        sim.port = port
        made.append(sim)
        return sim
    yield make
    for sim in made:
        sim.stop()


# -- the link: each failure named, reported before the request fails ---------------------

def _sale(stan):
    return {"t": "0200", "2": "4111111111111111", "3": "000000", "4": "%012d" % 1000,
            "7": transmission_time(), "11": stan, "22": "051", "41": TID,
            "42": "000000000000001", "49": "840"}


def _one_request(port, ca_file):
    """One sale through a HostLink pinned to ca_file: (what happened, in order)."""
    reactor = Reactor()
    seen = []
    link = HostLink(reactor, "127.0.0.1", port, ssl_context=make_client_context(ca_file),
                    on_link=lambda state: seen.append(("link", state)),
                    on_untrusted=lambda kind, why: seen.append(("untrusted", kind, why)))
    link.request(_sale(Stan().next()), 5000, lambda result: seen.append(("result", result)))
    for _ in range(200):
        if any(s[0] == "result" for s in seen):
            break
        reactor.run_once(50)
    reactor.run_once(0)
    link.close()
    reactor.close()
    return seen


@pytest.mark.parametrize("case,kind", [("name", "name"), ("expired", "expired"),
                                       ("early", "expired")])
def test_right_ca_but_wrong_name_or_dates_is_untrusted_and_nothing_is_sent(pki, hosts, case,
                                                                          kind):
    impostor = hosts(case, pki.issue(case, **CERTS[case]))
    seen = _one_request(impostor.port, pki.ca)
    [untrusted] = [s for s in seen if s[0] == "untrusted"]
    [result] = [s[1] for s in seen if s[0] == "result"]
    assert untrusted[1] == kind and "not trusted" in untrusted[2]
    assert result["kind"] == "error" and result["untrusted"] == kind and result["sent"] is False
    # the terminal hears why before the payment hears it failed
    assert seen.index(untrusted) < [s[0] for s in seen].index("result")
    assert ("link", "down") in seen
    assert impostor.ledger.exchanges() == []             # not one message reached it


def test_a_man_in_the_middle_with_his_own_ca_is_named_and_the_good_host_is_not(pki, hosts):
    good = hosts("good", pki.issue("good"))
    seen = _one_request(good.port, pki.ca)
    [result] = [s[1] for s in seen if s[0] == "result"]
    assert result["kind"] == "response" and result["msg"]["39"] == "00"
    assert not [s for s in seen if s[0] == "untrusted"]
    mitm = hosts("mitm")                                 # hostsim's own, other CA
    seen = _one_request(mitm.port, pki.ca)
    [result] = [s[1] for s in seen if s[0] == "result"]
    assert result.get("untrusted") == "ca" and result["sent"] is False
    assert "pinned CA" in result["reason"]
    assert mitm.ledger.exchanges() == []


# -- the terminal ---------------------------------------------------------------------------

class ChipSlot:
    """A chip reader answered by a tools/cards/vcard.py card on the loop (as in
    tests/test_storm.py): the same kernel, chip flow and payments service, with T=0's
    61xx and 6Cxx handled by drivers/pcsc.py's own helpers."""

    def __init__(self, h):
        self.h = h
        self.card = None

    def exchange(self, apdu, callback):
        self.h.reactor.call_soon(callback, self._answer(bytes(apdu)))

    def _answer(self, apdu):
        from drivers.pcsc import get_response, with_le
        if self.card is None:
            return {"ok": False, "reason": "card_removed", "detail": "no card"}
        command, data, resent = apdu, bytearray(), False
        try:
            for _ in range(64):
                response = self.card.transmit(command)
                sw1, sw2 = response[-2], response[-1]
                if sw1 == 0x61:
                    data += response[:-2]
                    command, resent = get_response(apdu[0], sw2), False
                    continue
                again = with_le(command, sw2) if sw1 == 0x6C and not resent else None
                if again is not None:
                    command, resent = again, True
                    continue
                return {"ok": True, "rapdu": bytes(data) + response}
        except CardRemoved as exc:
            return {"ok": False, "reason": "card_removed", "detail": str(exc)}
        return {"ok": False, "reason": "reader_error", "detail": "GET RESPONSE loop"}

    def power_off(self, callback=None):
        if callback is not None:
            self.h.reactor.call_soon(callback, {"ok": True})

    def insert(self, profile):
        self.card = VirtualCard(profile)
        self.h.term.on_card_event("inserted", self.card.atr)


def _with_chip(h):
    h.chip = ChipSlot(h)
    h.term.payments.chip_reader = h.chip
    return h


def _beeps(h):
    """The buzzer's patterns from now on, as the person hears them."""
    heard = []
    real = h.term.buzzer.beep

    def beep(pattern="key"):
        heard.append(pattern)
        real(pattern)
    h.term.buzzer.beep = beep
    return heard


def _chip_sale(h, digits, card="dda", pin="1234"):
    """A chip sale with an offline-PIN card (the kind a card approves offline itself)."""
    h.press(*digits)
    h.press("ENTER", "1")
    h.wait_for("Insert, tap or swipe")
    h.chip.insert(card)
    h.run(5000, until=lambda: "Customer PIN" in h.text() or h.flow()[0] != "chip")
    if "Customer PIN" in h.text():
        h.press(*pin)
        h.press("ENTER")
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    return h.term.payments.journal.last()


def _audit(h, event):
    return [row for row in h.term.store.audit_log(500) if row[1] == event]


def _in_the_middle(net, mitm):
    """The network now leads to the man in the middle; open connections are cut."""
    net.upstream_port = mitm.port
    net.set("reset", existing=True, new=False)
    net.set("pass")


def _back_to_the_host(net, hostsim):
    net.upstream_port = int(hostsim.address.rsplit(":", 1)[1])
    net.set("reset", existing=True, new=False)
    net.set("pass")


def _end_sale(h):
    """CANCEL through the sale's result and receipts, up to what comes after it."""
    for _ in range(4):
        if h.flow()[0] not in ("sale", "chip"):
            break
        h.press("CANCEL")
        h.run(3000, until=lambda: h.flow() != ("sale", "result"))
    assert h.flow()[0] not in ("sale", "chip"), h.flow()


def _dismiss_notice(h):
    assert h.run(3000, until=lambda: h.flow() is not None and h.flow()[0] == "notice"), h.text()
    text = h.text()
    h.press("ENTER")
    h.run(1000, until=lambda: h.flow() == ("idle", "idle"))
    return text


def test_a_man_in_the_middle_is_named_alarmed_and_never_approved_offline(online, hosts, net):
    h = _with_chip(online(**SWIPE_OK))
    assert h.term.link_state == "up"
    mitm = hosts("mitm")
    _in_the_middle(net, mitm)
    heard = _beeps(h)
    rec = h.swipe_sale("2000")          # a stripe this merchant accepts offline
    text = h.text()
    assert rec["state"] == "failed" and rec["offline"] == 0, rec
    assert "NOT CHARGED" in text and "Host cert not trusted" in text, text
    assert "Host unreachable" not in text and "APPROVED" not in text
    assert "alert" in heard
    assert h.term.payments.queue.pending() == []
    assert mitm.ledger.exchanges() == [] and h.host.ledger.count(TID, status="approved") == 0
    assert h.flow()[0] == "sale"                  # no notice over the payment's result
    _end_sale(h)
    # the notice came once the payment was over; then the idle screen keeps saying it
    notice = _dismiss_notice(h)
    assert "SECURITY" in notice and "Host cert not trusted" in notice, notice
    assert "Not the pinned CA" in notice and "Offline pay stopped" in notice, notice
    assert "! Host cert untrusted" in h.text(), h.text()
    [row] = _audit(h, "host_untrusted")
    assert row[3].startswith("ca: ") and "pinned CA" in row[3], row
    assert h.term.store.get_setting(SETTING).startswith("ca ")
    # a chip card that would approve itself offline: asked to decline, nothing charged
    rec = _chip_sale(h, "2500")
    text = h.text()
    assert rec["state"] == "failed" and rec["offline"] == 0, (rec, text)
    assert "NOT CHARGED" in text and "Host cert not trusted" in text, text
    assert h.term.payments.queue.pending() == [] and mitm.ledger.exchanges() == []
    h.to_idle()
    assert h.flow() == ("idle", "idle")           # no second notice for the same alarm
    assert len(_audit(h, "host_untrusted")) == 1


def test_the_alarm_outlives_a_restart_and_a_trusted_host_until_a_technician_clears_it(
        online, harness, hosts, hostsim, net):
    h = online(**SWIPE_OK)
    h.term.auth.create(TECH_ID, "Tech", "technician", TECH_PIN)
    mitm = hosts("mitm")
    _in_the_middle(net, mitm)
    h.swipe_sale("2000")
    _end_sale(h)
    _dismiss_notice(h)
    # the real host is back, and the terminal restarts
    _back_to_the_host(net, hostsim)
    h.close()
    h = _with_chip(harness(host=("127.0.0.1:%d" % net.port, hostsim.ca_file), synced=True,
                           offline=SWIPE_OK))
    h.login()
    h.run(3000, until=lambda: h.term.link_state == "up")
    assert h.term.link_state == "up"              # signed on: a trusted host again
    assert "! Host cert untrusted" in h.text(), h.text()
    # online authorisation with the trusted host goes on
    rec = h.swipe_sale("1000")
    assert rec["state"] == "approved" and rec["offline"] == 0 and rec["auth_code"] != "Y1", rec
    assert hostsim.ledger.approved_total(TID) == 1000
    h.to_idle()
    assert "! Host cert untrusted" in h.text(), h.text()      # not cleared by itself
    # but offline approval stays off, for stripes and chips alike, in words
    net.set("reset", existing=True, new=True)
    rec = h.swipe_sale("2000")
    assert rec["state"] == "failed" and rec["offline"] == 0, rec
    assert "NOT CHARGED" in h.text() and "No offline: host cert" in h.text(), h.text()
    h.to_idle()
    rec = _chip_sale(h, "2500")
    assert rec["state"] == "failed" and rec["offline"] == 0, (rec, h.text())
    assert "No offline: host cert" in h.text(), h.text()
    assert h.term.payments.queue.pending() == []
    h.to_idle()
    # Settings > Host certificate: what was seen; a supervisor cannot clear it
    h.press("MENU", "6", "6")
    assert "Host cert not trusted" in h.text() and "Not the pinned CA" in h.text(), h.text()
    assert "Since " in h.text()
    h.press("ENTER")
    assert "Technician ID" in h.text(), h.text()
    h.press("1", "ENTER", *"2580")
    h.press("ENTER")
    assert "Not a technician" in h.text(), h.text()
    h.press(TECH_ID, "ENTER", "1", "1", "1", "1", "ENTER")
    assert "Wrong ID or PIN" in h.text(), h.text()
    assert h.term.payments.trust.untrusted()
    assert [r[2] for r in _audit(h, "technician_refused")] == [TECH_ID, "1"]
    h.press(TECH_ID, "ENTER", *TECH_PIN)
    h.press("ENTER")
    assert "Host alarm cleared" in h.text() and "Offline pay allowed" in h.text(), h.text()
    [cleared] = _audit(h, "host_trust_cleared")
    assert cleared[2] == TECH_ID and cleared[3].startswith("ca since "), cleared
    assert h.term.store.get_setting(SETTING) == ""
    h.press("ENTER", "CANCEL", "CANCEL")
    h.to_idle()
    assert "Host cert" not in h.text(), h.text()
    # and offline approval is back: the same payment as before is approved offline
    rec = h.swipe_sale("2000")
    assert rec["state"] == "approved" and rec["offline"] == 1, (rec, h.text())
    assert "OFFLINE" in h.text()


@pytest.mark.parametrize("case,kind", [("name", "name"), ("expired", "expired")])
def test_wrong_name_or_expired_from_the_pinned_ca_get_the_same_treatment(harness, pki, hosts,
                                                                         case, kind):
    impostor = hosts(case, pki.issue(case, **CERTS[case]))
    h = harness(host=("127.0.0.1:%d" % impostor.port, pki.ca), synced=True, offline=SWIPE_OK)
    heard = _beeps(h)
    h.first_supervisor()                # the sign-on at start met the certificate
    assert "alert" in heard
    assert h.term.payments.trust.untrusted()
    h.login()                           # the notice waited for someone to read it
    notice = _dismiss_notice(h)
    assert "Host cert not trusted" in notice and KIND_WORDS[kind] in notice, notice
    assert "! Host cert untrusted" in h.text(), h.text()
    rec = h.swipe_sale("2000")
    assert rec["state"] == "failed" and rec["offline"] == 0, rec
    assert "Host cert not trusted" in h.text(), h.text()
    assert h.term.payments.queue.pending() == [] and impostor.ledger.exchanges() == []
    assert _audit(h, "host_untrusted")[0][3].startswith(kind + ": ")


def test_the_settings_entry_says_so_when_nothing_is_wrong(online):
    h = online()
    h.press("MENU", "6", "6")
    assert "Host trusted" in h.text(), h.text()
    assert not _audit(h, "host_trust_cleared")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_alarm_screens_fit_the_panel(harness, pki, hosts, language):
    """The notice, the idle line, the sale's words and the technician's screens drawn
    whole in both languages (the suite's no_text_lost fixture fails any cut)."""
    impostor = hosts("expired", pki.issue("expired", **CERTS["expired"]))
    h = harness(host=("127.0.0.1:%d" % impostor.port, pki.ca), synced=True, offline=SWIPE_OK)
    h.first_supervisor()
    h.term.auth.create(TECH_ID, "Tech", "technician", TECH_PIN)
    if language == "zh":
        h.press("F2")                   # the login screen's language key
    h.press("1", "ENTER", "2", "5", "8", "0", "ENTER")   # the supervisor sells (a technician
    _dismiss_notice(h)                                  # sells nothing)
    h.swipe_sale("2000")
    assert h.term.screen.lines and h.term.screen.big
    h.to_idle()
    h.press("F4")                       # log out; the technician comes
    h.run(500, until=lambda: h.flow() == ("login", "id"))
    h.press(*TECH_ID)                   # a logged-in technician types only the PIN later
    h.press("ENTER", *TECH_PIN)
    h.press("ENTER")
    h.run(1000, until=lambda: h.flow() is not None and h.flow()[0] in ("notice", "idle"))
    h.to_idle()
    h.press("MENU", "6")
    h.press("5")                    # a technician's Settings: no operators
    assert h.flow() == ("host_trust", "show"), h.flow()
    h.press("ENTER")
    assert h.flow() == ("host_trust", "pin"), h.flow()
    h.press("9", "9", "9", "9", "ENTER")
    assert h.flow() == ("host_trust", "id"), h.flow()
    h.press(TECH_ID, "ENTER", *TECH_PIN)
    h.press("ENTER")
    assert h.flow() == ("host_trust", "done") and not h.term.payments.trust.untrusted()

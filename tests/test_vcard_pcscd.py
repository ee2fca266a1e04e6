"""The virtual card through the real PC/SC stack: pcscd with the vsmartcard vpcd driver,
pyscard's SCardTransmit, and tools/cards/vcard.py on the far end of vpcd's socket.

pcscd runs privately (tools.cards.vcard.PrivatePcscd: its own socket by socket activation,
its own reader.conf.d, its own vpcd ports), so the test neither needs nor disturbs a
system pcscd. The PC/SC client runs in a child process: libpcsclite reads
PCSCLITE_CSOCK_NAME once per process, and a child also bounds the time a stuck call
can take.

CI (Debian/Ubuntu):
    apt-get install -y pcscd vsmartcard-vpcd libpcsclite-dev swig
    pip install pyscard
No service needs starting: the test starts and stops its own pcscd.
"""
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from tools.cards.vcard import PrivatePcscd, VirtualCard, run_vpcd_card, vpcd_driver

pytestmark = [
    pytest.mark.skipif(shutil.which("pcscd") is None,
                       reason="pcscd is not installed (Debian: apt-get install pcscd "
                              "vsmartcard-vpcd libpcsclite-dev swig; pip install pyscard)"),
    pytest.mark.skipif(vpcd_driver() is None,
                       reason="the vpcd driver is not installed (Debian: apt-get install "
                              "vsmartcard-vpcd)"),
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The PC/SC client: find both vpcd slots, wait for the cards, run the exchanges given as
# JSON on stdin ({"reader name": [apdu hex, ...]}), print {"reader": {"atr", "responses",
# "protocol"}} as JSON. Raw responses: GET RESPONSE and 6Cxx are the test's business.
CLIENT = r"""
import json, sys, time
from smartcard.System import readers
from smartcard.CardConnection import CardConnection
from smartcard.Exceptions import CardConnectionException, NoCardException

plan = json.load(sys.stdin)
deadline = time.monotonic() + 15
out = {"readers": None}
for name, apdus in plan.items():
    conn = None
    while conn is None:
        if time.monotonic() > deadline:
            sys.exit("no card in %r; readers: %s" % (name, [str(r) for r in readers()]))
        found = [r for r in readers() if str(r) == name]
        if found:
            try:
                conn = found[0].createConnection()
                conn.connect()
            except (NoCardException, CardConnectionException):
                conn = None
        if conn is None:
            time.sleep(0.1)
    protocol = {CardConnection.T0_protocol: "T=0", CardConnection.T1_protocol: "T=1"}.get(
        conn.getProtocol(), str(conn.getProtocol()))
    responses = []
    for apdu in apdus:
        data, sw1, sw2 = conn.transmit(list(bytes.fromhex(apdu)))
        responses.append(bytes(data + [sw1, sw2]).hex().upper())
    out[name] = {"atr": bytes(conn.getATR()).hex().upper(), "protocol": protocol,
                 "responses": responses}
    conn.disconnect()
out["readers"] = [str(r) for r in readers()]
print(json.dumps(out))
"""

SELECT_PPSE = "00A404000E325041592E5359532E444446303100"
SELECT_PSE = "00A404000E315041592E5359532E444446303100"
SELECT_VISA = "00A4040007A000000003101000"
SELECT_MC = "00A4040007A000000004101000"
# qVSDC PDOL data: TTQ, 10.00, 0.00, USA, TVR, USD, 2026-01-21, purchase, UN
GPO_QVSDC = ("80A80000238321" "26000000" "000000001000" "000000000000" "0840" "0000000000"
             "0840" "260121" "00" "11223344" "00")
GPO_EMPTY_PDOL = "80A80000028300" "00"


def run_client(pcscd, plan):
    try:
        done = subprocess.run([sys.executable, "-c", CLIENT], input=json.dumps(plan),
                              env=pcscd.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=40)
    except subprocess.TimeoutExpired:
        pytest.fail("the PC/SC client took more than 40 s; pcscd log: %s" % pcscd.log_path)
    if done.returncode != 0:
        log = open(pcscd.log_path).read()[-3000:] if os.path.exists(pcscd.log_path) else ""
        pytest.fail("PC/SC client failed (%d): %s\n--- pcscd log ---\n%s"
                    % (done.returncode, done.stderr[-3000:], log))
    return json.loads(done.stdout)


@pytest.fixture
def pcscd(tmp_path):
    daemon = PrivatePcscd(str(tmp_path / "pcscd"), debug=True)
    os.makedirs(daemon.workdir, exist_ok=True)
    daemon.start()
    yield daemon
    daemon.stop()
    assert daemon.proc is None


@pytest.fixture
def cards(pcscd):
    """A contactless card (no_cvm) in slot 0 and a T=0 chip card (offline_pin) in slot 1."""
    stop = threading.Event()
    served = {"Virtual PCD 00 00": VirtualCard("no_cvm"),
              "Virtual PCD 00 01": VirtualCard("offline_pin")}
    threads = []
    for offset, card in enumerate(served.values()):
        t = threading.Thread(target=run_vpcd_card,
                             args=(card, "127.0.0.1", pcscd.port + offset, stop),
                             kwargs={"retry_s": 0.1}, daemon=True)
        t.start()
        threads.append(t)
    yield served
    stop.set()
    for t in threads:
        t.join(5)
        assert not t.is_alive()


def test_ppse_and_gpo_through_pcscd(pcscd, cards):
    out = run_client(pcscd, {"Virtual PCD 00 00": [SELECT_PPSE, SELECT_VISA, GPO_QVSDC]})
    assert out["readers"] == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    slot = out["Virtual PCD 00 00"]
    assert slot["atr"] == "3B80800101"
    ppse, aid, gpo = (bytes.fromhex(r) for r in slot["responses"])
    assert ppse[-2:] == b"\x90\x00" and b"\xA0\x00\x00\x00\x03\x10\x10" in ppse
    assert aid[-2:] == b"\x90\x00" and aid[:1] == b"\x6F"
    assert gpo[-2:] == b"\x90\x00" and gpo[0] == 0x77
    assert bytes.fromhex("9F270180") in gpo                   # an ARQC came back
    # the card saw exactly what pyscard sent, and answered what pyscard received
    card = cards["Virtual PCD 00 00"]
    assert [c.hex().upper() for c, _ in card.log] == [SELECT_PPSE, SELECT_VISA, GPO_QVSDC]
    assert [r.hex().upper() for _, r in card.log] == slot["responses"]


def test_t0_status_words_pass_through_pcscd(pcscd, cards):
    plan = {"Virtual PCD 00 01": [SELECT_PSE, "00C0000000", SELECT_MC, GPO_EMPTY_PDOL,
                                  "00B2010C00"]}
    slot = run_client(pcscd, plan)["Virtual PCD 00 01"]
    assert slot["atr"] == "3B600000"
    assert slot["protocol"] == "T=0"
    select_pse, early, _, gpo, record = slot["responses"]
    assert select_pse[:2] == "61"                             # GET RESPONSE, reader
    assert early[:2] == "6C"                                  # Le 00 is the wrong length
    assert gpo[:2] == "61"
    assert record[:2] == "6C"


def test_card_comes_back_when_pcscd_restarts(pcscd, cards):
    first = run_client(pcscd, {"Virtual PCD 00 00": [SELECT_PPSE, SELECT_VISA, GPO_QVSDC]})
    pcscd.stop()
    pcscd.start()                                             # same socket, same ports
    second = run_client(pcscd, {"Virtual PCD 00 00": [SELECT_PPSE, SELECT_VISA, GPO_QVSDC]})
    atc = [bytes.fromhex(out["Virtual PCD 00 00"]["responses"][2]) for out in (first, second)]
    # 9F36 follows 9F27 in the qVSDC answer: the card kept counting across the restart
    at = [r.index(bytes.fromhex("9F3602")) + 3 for r in atc]
    assert int.from_bytes(atc[1][at[1]:at[1] + 2], "big") == \
        int.from_bytes(atc[0][at[0]:at[0] + 2], "big") + 1

"""Moving the offline queue off a broken terminal: the merchant's transfer keys and the
signed export file."""
import os


# The merchant's transfer keys for moving a queue off a broken terminal: loaded into
# DATA/keys/ like the DUKPT key; test mode falls back to these published test values.
TEST_EXPORT_KEY = bytes(range(32))
TEST_EXPORT_SIGNING_SEED = bytes(range(32, 64))


def export_keys(config):
    """(32-byte export key, Ed25519 signing seed): DATA/keys/export.key and
    export_sign.key, or the test values when [security] test_keys is on."""
    folder = os.path.join(config["storage"]["data_dir"], "keys")
    keys = []
    for name, test in (("export.key", TEST_EXPORT_KEY), ("export_sign.key", TEST_EXPORT_SIGNING_SEED)):
        try:
            with open(os.path.join(folder, name), "rb") as f:
                keys.append(f.read(33))
        except FileNotFoundError:
            if not config["security"]["test_keys"]:
                raise RuntimeError("no %s in %s: the technician loads the merchant's export "
                                   "keys" % (name, folder))
            keys.append(test)
    return keys[0], keys[1]


def export_queue(queue, config, system):
    """Write the queue's pending records to DATA/export/saf-TID-TIME.json; (path, n)."""
    key, seed = export_keys(config)
    folder = os.path.join(config["storage"]["data_dir"], "export")
    os.makedirs(folder, exist_ok=True)
    y, mo, d, h, mi, s = system.utc_time()
    path = os.path.join(folder, "saf-%s-%04d%02d%02dT%02d%02d%02dZ.json"
                        % (config["terminal"]["id"], y, mo, d, h, mi, s))
    return path, queue.export(path, seed, key)

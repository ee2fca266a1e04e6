"""Reading the terminal's TOML configuration and the board profiles."""
import os
import tomllib

from drivers import keyroot
from firmware.core import config as schema

DEFAULT_PATH = "/etc/handpos/handpos.toml"
PROFILE_DIR = os.path.join(os.path.dirname(__file__), "profiles")


class ConfigError(Exception):
    """Carries one line per problem; the CLI prints them and refuses to start."""

    def __init__(self, problems):
        Exception.__init__(self, "\n".join(problems))
        self.problems = problems


def config_path(explicit=None, env=None):
    env = os.environ if env is None else env
    return explicit or env.get("HANDPOS_CONFIG") or DEFAULT_PATH


def load_config(path):
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(["%s: no such file; copy config/handpos.example.toml there "
                           "or pass --config" % path])
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(["%s: not valid TOML: %s" % (path, exc)])
    except OSError as exc:
        raise ConfigError(["%s: cannot read: %s" % (path, exc.strerror)])
    config, errors = schema.validate(raw)
    if errors:
        raise ConfigError(["%s: %s" % (path, e) for e in errors])
    # relative paths in the file are relative to the file, not to where it was started
    ca = config["host"]["ca_file"]
    if ca and not os.path.isabs(ca):
        config["host"]["ca_file"] = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), ca))
    problems = lab_problems(config)
    if problems:
        raise ConfigError(["%s: %s" % (path, e) for e in problems])
    return config


# the organisation the host simulator writes into its generated test CA
TEST_CA_ORG = "handpos test acquirer"


def is_test_ca(path):
    """True when the PEM at path is the host simulator's generated test CA."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return any(a.value == TEST_CA_ORG for a in orgs)
    except (OSError, ValueError, ImportError):
        return False


def lab_problems(config):
    """Everything of the lab in a configuration that does not say it is a lab: plain
    TCP, the published test keys and the host simulator's test CA (one line each)."""
    problems = schema.lab_problems(config)
    ca = config["host"]["ca_file"]
    if not config["lab"]["enabled"] and ca and is_test_ca(ca):
        problems.append("host.ca_file = \"%s\": this is the host simulator's test CA, for the "
                        "lab only; pin the acquirer's CA, or set [lab] enabled = true on a lab "
                        "terminal" % ca)
    return problems


def profile_names():
    return sorted(n[:-5] for n in os.listdir(PROFILE_DIR) if n.endswith(".toml"))


def load_profile(name_or_path):
    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(PROFILE_DIR, name_or_path + ".toml")
    try:
        with open(path, "rb") as f:
            profile = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(["board %r: no such profile; known: %s"
                           % (name_or_path, ", ".join(profile_names()))])
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(["%s: not valid TOML: %s" % (path, exc)])
    missing = [s for s in ("board", "display", "keypad", "printer", "gpio") if s not in profile]
    if missing:
        raise ConfigError(["%s: missing section(s): %s" % (path, ", ".join(missing))])
    problems = keyroot.check_spec(profile.get("keyroot"))
    if problems:
        raise ConfigError(["%s: %s" % (path, p) for p in problems])
    return profile

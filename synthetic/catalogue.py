"""What the fabricated enterprise is made of: sites, apps, devices, user agents, ports, roles."""

from __future__ import annotations

import numpy as np

from synthetic.schema import FloatArr, IntArr, ObjArr

# --- catalogues -------------------------------------------------------------------------------
# Site k takes entry k % len (country, UTC offset in hours); more than 10 sites reuse countries.
SITE_CATALOGUE: tuple[tuple[str, float], ...] = (
    ("US", -5.0),
    ("DE", 1.0),
    ("IN", 5.5),
    ("GB", 0.0),
    ("JP", 9.0),
    ("BR", -3.0),
    ("FR", 1.0),
    ("AU", 10.0),
    ("SG", 8.0),
    ("MX", -6.0),
)
# Never produced by normal traffic, so a population model can learn they are rare.
RARE_COUNTRIES: tuple[str, ...] = ("RU", "CN", "KP", "NG", "IR", "BY")

NORMAL_APPS: tuple[str, ...] = (
    "email",
    "vpn",
    "slack",
    "wiki",
    "jira",
    "sharepoint",
    "git",
    "crm",
    "helpdesk",
    "erp",
    "ci-cd",
    "hr-portal",
    "bi-dashboard",
    "expenses",
    "payroll",
)
_APP_BASE = np.array(
    [0.20, 0.12, 0.12, 0.08, 0.08, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.03, 0.02, 0.015, 0.005]
)
RARE_APPS: tuple[str, ...] = ("admin-console", "payroll-export", "db-admin")
APPS: tuple[str, ...] = NORMAL_APPS + RARE_APPS
_INTERNET_FACING_APPS: tuple[int, ...] = (APPS.index("vpn"), APPS.index("email"))

AUTH_METHODS: tuple[str, ...] = ("password", "mfa_push", "sso", "certificate", "otp")
_PASSWORD = 0


def _method_table() -> FloatArr:
    """Per-app auth-method mix: VPN uses certificates, SaaS uses SSO, rare apps use passwords."""
    table = np.tile([0.06, 0.14, 0.75, 0.02, 0.03], (len(APPS), 1))
    table[APPS.index("vpn")] = [0.04, 0.36, 0.0, 0.5, 0.1]
    table[APPS.index("email")] = [0.12, 0.25, 0.6, 0.0, 0.03]
    table[APPS.index("git")] = [0.08, 0.1, 0.5, 0.3, 0.02]
    table[APPS.index("payroll")] = [0.05, 0.4, 0.45, 0.0, 0.1]
    for app in RARE_APPS:
        table[APPS.index(app)] = [0.6, 0.0, 0.0, 0.0, 0.4]
    cum: FloatArr = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)
    return cum


_METHOD_CUM = _method_table()

DESK_DEVICES: tuple[str, ...] = ("win-laptop", "win-desktop", "macbook", "linux-ws")
_DESK_BASE = np.array([0.45, 0.2, 0.25, 0.1])
MOBILE_DEVICES: tuple[str, ...] = ("iphone", "android", "ipad")
_MOB_BASE = np.array([0.5, 0.4, 0.1])
RARE_DEVICES: tuple[str, ...] = ("kali", "unknown-linux")
DEVICES: tuple[str, ...] = DESK_DEVICES + MOBILE_DEVICES + RARE_DEVICES + ("unknown",)
_N_NORMAL_DEVICES = len(DESK_DEVICES) + len(MOBILE_DEVICES)
_RARE_DEVICE_HOSTNAME = {"kali": "kali", "unknown-linux": "localhost"}

_CHROME = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0"
_SAFARI = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
DEVICE_USER_AGENTS: dict[str, tuple[str, ...]] = {
    "win-laptop": (
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CHROME} Safari/537.36",
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CHROME} Safari/537.36 Edg/130.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    ),
    "win-desktop": (
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CHROME} Safari/537.36 Edg/130.0.0.0",
        f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_CHROME} Safari/537.36",
    ),
    "macbook": (
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_SAFARI} Version/18.1 Safari/605.1.15",
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_CHROME} Safari/537.36",
    ),
    "linux-ws": (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        f"Mozilla/5.0 (X11; Linux x86_64) {_CHROME} Safari/537.36",
    ),
    "iphone": (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) {_SAFARI} Version/18.1 "
        "Mobile/15E148 Safari/604.1",
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) {_SAFARI} Version/17.6 "
        "Mobile/15E148 Safari/604.1",
    ),
    "android": (
        f"Mozilla/5.0 (Linux; Android 14; Pixel 8) {_CHROME} Mobile Safari/537.36",
        f"Mozilla/5.0 (Linux; Android 14; SM-S921B) {_CHROME} Mobile Safari/537.36",
    ),
    "ipad": (
        f"Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) {_SAFARI} Version/18.1 "
        "Mobile/15E148 Safari/604.1",
    ),
    "kali": ("Mozilla/5.0 (X11; Kali Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",),
    "unknown-linux": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.0.0 Safari/537.36",
    ),
    "unknown": ("python-requests/2.31.0", "Hydra", "curl/8.4.0"),
}
SCRIPTED_USER_AGENTS: tuple[str, ...] = DEVICE_USER_AGENTS["unknown"]


def _ua_table() -> tuple[ObjArr, IntArr]:
    """Pad the per-device user-agent lists into a matrix so UA choice can be vectorised."""
    width = max(len(v) for v in DEVICE_USER_AGENTS.values())
    table = np.empty((len(DEVICES), width), dtype=object)
    counts = np.zeros(len(DEVICES), dtype=np.int64)
    for i, dev in enumerate(DEVICES):
        uas = DEVICE_USER_AGENTS[dev]
        table[i] = [uas[j % len(uas)] for j in range(width)]
        counts[i] = len(uas)
    return table, counts


_UA_TABLE, _UA_COUNT = _ua_table()

# Netflow port catalogue: port, protocol, popularity, share to external IPs, median bytes_out of
# a typical workstation flow, bytes_in/bytes_out ratio, per-flow log-sigma, whether the volume
# scales with the host's size, median session length (ms). Port 0 stands for ICMP.
_PORT_ROWS: tuple[tuple[int, str, float, float, float, float, float, bool, float], ...] = (
    (443, "tcp", 0.40, 0.75, 1800, 7.0, 0.9, True, 400),
    (80, "tcp", 0.08, 0.80, 900, 8.0, 0.9, True, 200),
    (53, "udp", 0.14, 0.10, 70, 2.2, 0.25, False, 0),
    (22, "tcp", 0.04, 0.05, 4000, 3.0, 1.0, True, 60_000),
    (3389, "tcp", 0.03, 0.0, 3000, 30.0, 1.0, True, 900_000),
    (445, "tcp", 0.07, 0.0, 6000, 5.0, 1.0, True, 2_000),
    (8080, "tcp", 0.04, 0.30, 1500, 6.0, 0.9, True, 300),
    (123, "udp", 0.02, 0.50, 76, 1.0, 0.05, False, 0),
    (389, "tcp", 0.03, 0.0, 600, 3.0, 0.6, True, 100),
    (636, "tcp", 0.02, 0.0, 900, 3.0, 0.6, True, 100),
    (25, "tcp", 0.01, 0.50, 6000, 0.1, 1.0, False, 1_000),
    (587, "tcp", 0.01, 0.80, 8000, 0.1, 1.0, False, 1_000),
    (993, "tcp", 0.03, 0.90, 1200, 15.0, 1.0, True, 30_000),
    (5432, "tcp", 0.02, 0.0, 2500, 10.0, 1.0, True, 500),
    (3306, "tcp", 0.02, 0.0, 2500, 10.0, 1.0, True, 500),
    (1433, "tcp", 0.01, 0.0, 2500, 10.0, 1.0, True, 500),
    (8443, "tcp", 0.02, 0.70, 1800, 6.0, 0.9, True, 400),
    (9092, "tcp", 0.01, 0.0, 5000, 2.0, 1.0, True, 5_000),
    (0, "icmp", 0.01, 0.20, 64, 1.0, 0.0, False, 0),
)
PORTS = np.array([r[0] for r in _PORT_ROWS], dtype=np.int64)
_PORT_PROTO = np.array([r[1] for r in _PORT_ROWS], dtype=object)
_PORT_BASE = np.array([r[2] for r in _PORT_ROWS])
_PORT_EXT = np.array([r[3] for r in _PORT_ROWS])
_PORT_OUT = np.array([r[4] for r in _PORT_ROWS])
_PORT_IN_RATIO = np.array([r[5] for r in _PORT_ROWS])
_PORT_SIGMA = np.array([r[6] for r in _PORT_ROWS])
_PORT_SCALED = np.array([r[7] for r in _PORT_ROWS])
_PORT_SESSION = np.array([r[8] for r in _PORT_ROWS])
_HTTPS = int(np.flatnonzero(PORTS == 443)[0])
# Ports a workstation never talks to in normal traffic; exfiltration sometimes uses them.
UNUSUAL_PORTS: tuple[int, ...] = (4444, 6667, 9001, 1337, 2222, 8888, 31337)
_TCP_FLAGS: tuple[str, ...] = ("PA", "FA", "SA", "R", "S")
_TCP_FLAG_P = np.array([0.56, 0.26, 0.14, 0.03, 0.01])

ROLES: tuple[str, ...] = ("ws", "srv", "fs")  # workstation, server, big file/backup server
_ROLE_P = np.array([0.8, 0.15, 0.05])
_ROLE_FACTOR = np.array([1.0, 3.0, 10.0])  # host volume relative to a workstation
_ROLE_ACTIVITY = np.array([1.0, 2.5, 2.0])
_ROLE_IN = np.array([1.0, 0.5, 0.03])  # big servers mostly push data (backups, replication)
_ROLE_UNIFORM_TIME = np.array([0.2, 0.6, 0.7])  # share of flows not tied to office hours

# First octets of public IPs: normal destinations vs. attacker infrastructure (disjoint).
_NORMAL_OCTETS = (13, 20, 23, 34, 35, 40, 52, 54, 104, 142, 151, 157, 199, 204)
_RARE_OCTETS = (5, 31, 45, 91, 185, 193, 194, 195, 212, 217)

NORMAL_FAILURE_RATE = 0.03
NIGHT_SHIFT_SHARE = 0.06
WEEKEND_WEIGHT = 0.3
_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_N_EXTERNAL = 400

#!/usr/bin/env python
"""Self-signed CA + SuperLink certificate (127.0.0.1, localhost) and N SuperNode key pairs.

    .venv/bin/python scripts/fl/gen_certs.py --out /tmp/fl-pki --supernodes 3

Writes ca.crt, server.pem, server.key and supernode-<i>_key(.pub) (ECDSA P-384, OpenSSH format).
Private keys are created 0600. For loopback demos and tests; use your organisation's CA beyond.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from federated.certs import make_node_keys, make_tls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--supernodes", type=int, default=3)
    args = p.parse_args()
    tls = make_tls(args.out)
    print(f"CA: {tls.ca_cert}\nSuperLink: {tls.server_cert} {tls.server_key}")
    for i in range(args.supernodes):
        keys = make_node_keys(args.out, f"supernode-{i}")
        print(f"SuperNode {i}: {keys.private_key} (register {keys.public_key})")


if __name__ == "__main__":
    main()

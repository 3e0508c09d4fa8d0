"""`python -m services.user` runs the user service; with a command, an operator's task:

    python -m services.user create-admin --email EMAIL [--password-stdin] [--if-missing]

creates an admin's account (the only way to get one: registering through the API makes a
customer, whatever the email), with the password read from standard input, or generated and
printed once. It runs with the service's settings (STORE_URL, ...), beside running instances.
With `--if-missing`, an account that exists already is success, not an error (a deployment's
one-shot step, run again at each start).
"""

import argparse
import asyncio
import secrets
import sys

from ordermesh.errors import DomainError

from services.user.domain import EmailTaken
from services.user.main import create_admin, main

parser = argparse.ArgumentParser(prog="python -m services.user", description=__doc__)
commands = parser.add_subparsers(dest="command")
command = commands.add_parser("create-admin", help="create an admin's account")
command.add_argument("--email", required=True)
command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
command.add_argument("--if-missing", action="store_true", help="succeed if the account exists")
args = parser.parse_args()
if args.command is None:
    asyncio.run(main())
else:
    password = (
        sys.stdin.readline().rstrip("\n") if args.password_stdin else secrets.token_urlsafe(16)
    )
    try:
        user_id = asyncio.run(create_admin(args.email, password))
    except EmailTaken as exc:
        if not args.if_missing:
            sys.exit(f"create-admin: {exc}")
        print(f"admin {args.email}: an account exists already")
        sys.exit(0)
    except DomainError as exc:
        sys.exit(f"create-admin: {exc}")
    print(f"admin {args.email} created: user id {user_id}")
    if not args.password_stdin:
        print(f"password (printed once, not stored): {password}")

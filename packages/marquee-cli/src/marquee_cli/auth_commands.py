"""`marquee auth ...`: accounts, sessions and the RBAC policy, by hand.

The service is `--address host:port`, or else the "auth" process of the suite
running under `--data-dir`. `login` keeps the session's tokens for the other
commands (credentials.py, 0600); `policy` and `role` need a caller whose
roles grant action `admin` on `policy`: in the dev suite, register the user
`admin` (`marquee up` names it in auth's ADMIN_USERNAMES).

Passwords are prompted for (hidden), or read from MARQUEE_PASSWORD by scripts:
never from the command line, where other users can read them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from marquee_cli import credentials, output
from marquee_cli.cache_commands import DEFAULT_DATA_DIR, DataDir, Json, Timeout
from marquee_cli.credentials import AUTH_PROCESS, bearer
from marquee_cli.names import printable
from marquee_cli.rpc_output import message_dict, on_channel
from marquee_cli.service_address import suite_service_address

if TYPE_CHECKING:
    from marquee.auth.v1 import auth_pb2_grpc, policy_pb2, policy_pb2_grpc

DEFAULT_TIMEOUT = 15.0  # a login hashes a password on purpose slowly

Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="MARQUEE_AUTH_ADDRESS",
        help="Auth service host:port (default: from the running suite).",
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="MARQUEE_TOKEN",
        help="Access token (default: the one `marquee auth login` saved).",
        show_default=False,
    ),
]
Password = Annotated[
    str,
    typer.Option(
        "--password",
        envvar="MARQUEE_PASSWORD",
        prompt=True,
        hide_input=True,
        help="Prompted for when not in MARQUEE_PASSWORD.",
        show_default=False,
    ),
]
Text = Annotated[str, typer.Argument(callback=printable)]

app = output.command_group("Accounts, sessions and access policy (the auth service).")
policy_app = output.command_group("Add, remove and list policy rules (needs the admin role).")
role_app = output.command_group("Give users roles and list them (needs the admin role).")
app.add_typer(policy_app, name="policy")
app.add_typer(role_app, name="role")

T = TypeVar("T")


class Auth:
    """Channels to auth's two services, with the caller's token when one is needed."""

    def __init__(self, address: str | None, data_dir: Path, token: str | None = None) -> None:
        self.target = suite_service_address(AUTH_PROCESS, address, data_dir)
        self.data_dir = data_dir
        self._token = token

    def metadata(self) -> tuple[tuple[str, str]]:
        return bearer(self._token, self.data_dir)

    def accounts(self, action: Callable[[auth_pb2_grpc.AuthServiceStub], T]) -> T:
        from marquee.auth.v1 import auth_pb2_grpc

        stub = auth_pb2_grpc.AuthServiceStub
        return on_channel("auth", self.target, lambda channel: action(stub(channel)))

    def policy(self, action: Callable[[policy_pb2_grpc.PolicyServiceStub], T]) -> T:
        from marquee.auth.v1 import policy_pb2_grpc

        stub = policy_pb2_grpc.PolicyServiceStub
        return on_channel("auth", self.target, lambda channel: action(stub(channel)))


@app.command()
def register(
    username: Text,
    email: Annotated[str, typer.Option("--email", help="The account's email address.")],
    password: Password,
    display_name: Annotated[str, typer.Option("--display-name", help="Optional.")] = "",
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Create the account USERNAME."""
    from marquee.auth.v1 import auth_pb2

    request = auth_pb2.RegisterRequest(
        username=username, password=password, email=email, display_name=display_name
    )
    reply = Auth(address, data_dir).accounts(lambda s: s.Register(request, timeout=timeout))
    if json_output:
        typer.echo(output.render_json(message_dict(reply.user)))
    else:
        typer.echo(f"registered {reply.user.username} (user id {reply.user.id})")


@app.command()
def login(
    username: Text,
    password: Password,
    totp: Annotated[
        str | None,
        typer.Option("--totp", help="The authenticator's code, if the account has TOTP."),
    ] = None,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Log in as USERNAME and keep the session's tokens for the other commands."""
    from marquee.auth.v1 import auth_pb2

    auth = Auth(address, data_dir)
    request = auth_pb2.LoginRequest(username=username, password=password)
    reply = auth.accounts(lambda s: s.Login(request, timeout=timeout))
    if reply.WhichOneof("result") == "mfa_challenge":
        code = totp or typer.prompt("TOTP code", hide_input=False)
        verify = auth_pb2.VerifyTotpRequest(
            challenge_id=reply.mfa_challenge.challenge_id, code=code
        )
        tokens = auth.accounts(lambda s: s.VerifyTotp(verify, timeout=timeout)).tokens
    else:
        tokens = reply.tokens
    path = credentials.save(data_dir, tokens, auth.target)
    typer.echo(f"logged in as {username} (user id {tokens.user_id}); tokens in {path}")


@app.command()
def logout(
    all_sessions: Annotated[
        bool, typer.Option("--all", help="End every session of the user, not just this one.")
    ] = False,
    address: Address = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """End the saved session (or all of the user's) and forget its tokens."""
    from marquee.auth.v1 import auth_pb2

    saved = credentials.load(data_dir)
    if saved is None:
        raise output.negative("not logged in")
    auth = Auth(address or saved.get("auth_address"), data_dir)
    request = auth_pb2.LogoutRequest(
        refresh_token=saved.get("refresh_token") or "", all_sessions=all_sessions
    )
    auth.accounts(lambda s: s.Logout(request, timeout=timeout, metadata=auth.metadata()))
    credentials.forget(data_dir)
    typer.echo("logged out" + (" of every session" if all_sessions else ""))


@app.command()
def check(
    subject: Text,
    object_: Annotated[str, typer.Argument(metavar="OBJECT", callback=printable)],
    action: Text,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """May SUBJECT (a user id or role) do ACTION on OBJECT? Exit 0 if allowed, 1 if not."""
    from marquee.auth.v1 import auth_pb2

    auth = Auth(address, data_dir, token)
    request = auth_pb2.CheckRequest(subject=subject, object=object_, action=action)
    reply = auth.accounts(lambda s: s.Check(request, timeout=timeout, metadata=auth.metadata()))
    if json_output:
        typer.echo(output.render_json({"allowed": reply.allowed}))
    else:
        typer.echo("allowed" if reply.allowed else "denied")
    if not reply.allowed:
        raise typer.Exit(1)


def _policy(subject: str, object_: str, action: str, deny: bool) -> policy_pb2.Policy:
    from marquee.auth.v1 import policy_pb2

    effect = policy_pb2.POLICY_EFFECT_DENY if deny else policy_pb2.POLICY_EFFECT_ALLOW
    return policy_pb2.Policy(subject=subject, object=object_, action=action, effect=effect)


def _effect_name(effect: policy_pb2.PolicyEffect.ValueType) -> str:
    from marquee.auth.v1 import policy_pb2

    return policy_pb2.PolicyEffect.Name(effect).removeprefix("POLICY_EFFECT_").lower()


Deny = Annotated[bool, typer.Option("--deny", help="A deny rule (default: allow).")]
ObjectArg = Annotated[str, typer.Argument(metavar="OBJECT", callback=printable)]


@policy_app.command("add")
def policy_add(
    subject: Text,
    object_: ObjectArg,
    action: Text,
    deny: Deny = False,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Let SUBJECT do ACTION on OBJECT (keyMatch wildcards, e.g. /media/*), or --deny it."""
    from marquee.auth.v1 import policy_pb2

    auth = Auth(address, data_dir, token)
    request = policy_pb2.AddPolicyRequest(policy=_policy(subject, object_, action, deny))
    reply = auth.policy(lambda s: s.AddPolicy(request, timeout=timeout, metadata=auth.metadata()))
    typer.echo("added" if reply.added else "already there")


@policy_app.command("remove")
def policy_remove(
    subject: Text,
    object_: ObjectArg,
    action: Text,
    deny: Deny = False,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Remove exactly that rule; exit 1 if there was none."""
    from marquee.auth.v1 import policy_pb2

    auth = Auth(address, data_dir, token)
    request = policy_pb2.RemovePolicyRequest(policy=_policy(subject, object_, action, deny))
    reply = auth.policy(
        lambda s: s.RemovePolicy(request, timeout=timeout, metadata=auth.metadata())
    )
    if not reply.removed:
        raise output.negative("no such rule")
    typer.echo("removed")


@policy_app.command("list")
def policy_list(
    subject: Annotated[str, typer.Option("--subject", help="Only this subject's.")] = "",
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """The policy's rules."""
    from marquee.auth.v1 import policy_pb2

    auth = Auth(address, data_dir, token)
    request = policy_pb2.ListPoliciesRequest(subject=subject)
    reply = auth.policy(
        lambda s: s.ListPolicies(request, timeout=timeout, metadata=auth.metadata())
    )
    if json_output:
        typer.echo(output.render_json(message_dict(reply)))
        return
    rows = [(p.subject, p.object, p.action, _effect_name(p.effect)) for p in reply.policies]
    typer.echo(output.render_table(("subject", "object", "action", "effect"), rows))


@role_app.command("assign")
def role_assign(
    user_id: Text,
    role: Text,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Give USER_ID the role ROLE."""
    from marquee.auth.v1 import policy_pb2

    auth = Auth(address, data_dir, token)
    request = policy_pb2.AssignRoleRequest(user_id=user_id, role=role)
    reply = auth.policy(lambda s: s.AssignRole(request, timeout=timeout, metadata=auth.metadata()))
    typer.echo("assigned" if reply.assigned else "already had it")


@role_app.command("unassign")
def role_unassign(
    user_id: Text,
    role: Text,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Take the role ROLE from USER_ID; exit 1 if it did not have it."""
    from marquee.auth.v1 import policy_pb2

    auth = Auth(address, data_dir, token)
    request = policy_pb2.UnassignRoleRequest(user_id=user_id, role=role)
    reply = auth.policy(
        lambda s: s.UnassignRole(request, timeout=timeout, metadata=auth.metadata())
    )
    if not reply.unassigned:
        raise output.negative(f"{user_id} did not have the role {role!r}")
    typer.echo("unassigned")


@role_app.command("list")
def role_list(
    user_id: Text,
    address: Address = None,
    token: Token = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """USER_ID's roles, those inherited through the role hierarchy included."""
    from marquee.auth.v1 import policy_pb2

    auth = Auth(address, data_dir, token)
    request = policy_pb2.ListUserRolesRequest(user_id=user_id, include_implicit=True)
    reply = auth.policy(
        lambda s: s.ListUserRoles(request, timeout=timeout, metadata=auth.metadata())
    )
    typer.echo("\n".join(reply.roles) if reply.roles else output.EMPTY)

"""PolicyService (RBAC administration) and AuthService.Check."""

from __future__ import annotations

import unicodedata

from marquee.auth.v1 import auth_pb2, policy_pb2, policy_pb2_grpc
from marquee_auth.deps import Context
from marquee_auth.policy_engine import PolicyEngine
from marquee_auth.validation import Violations
from marquee_authn import TokenVerifier, authenticated, current_identity
from marquee_platform.encoded import pre_encoded
from marquee_platform.errors import PermissionDenied

MAX_FIELD = 256
_EFFECTS = {policy_pb2.POLICY_EFFECT_ALLOW: "allow", policy_pb2.POLICY_EFFECT_DENY: "deny"}
_EFFECT_OF = {name: effect for effect, name in _EFFECTS.items()}
# Check has two answers: each is encoded once rather than built on every call.
_ANSWERS = {
    answer: auth_pb2.CheckResponse(allowed=answer).SerializeToString() for answer in (True, False)
}


def _check_field(v: Violations, field: str, value: str, *, required: bool = True) -> None:
    if not value:
        if required:
            v.add(field, "required")
    elif len(value) > MAX_FIELD or (
        # isprintable() (in C) is false for every Cc and Cf character, so a
        # printable value needs no look at each character.
        not value.isprintable() and any(unicodedata.category(c) in ("Cc", "Cf") for c in value)
    ):
        v.add(field, f"at most {MAX_FIELD} characters, no control characters")


def _plainly_valid(value: str) -> bool:
    """What _check_field passes, told at C speed for the usual value (Check's hot path)."""
    return 0 < len(value) <= MAX_FIELD and value.isprintable()


def _rule(v: Violations, policy: policy_pb2.Policy) -> list[str]:
    _check_field(v, "policy.subject", policy.subject)
    _check_field(v, "policy.object", policy.object)
    _check_field(v, "policy.action", policy.action)
    if policy.effect not in _EFFECTS:
        v.add("policy.effect", "POLICY_EFFECT_ALLOW or POLICY_EFFECT_DENY")
    v.raise_if_any()
    return [policy.subject, policy.object, policy.action, _EFFECTS[policy.effect]]


class CheckRpc:
    token_verifier: TokenVerifier
    policy: PolicyEngine

    @authenticated
    async def Check(
        self, request: auth_pb2.CheckRequest, context: Context
    ) -> auth_pb2.CheckResponse:
        subject, obj, action = request.subject, request.object, request.action
        if not (_plainly_valid(subject) and _plainly_valid(obj) and _plainly_valid(action)):
            v = Violations()
            _check_field(v, "subject", subject)
            _check_field(v, "object", obj)
            _check_field(v, "action", action)
            v.raise_if_any()
        allowed = self.policy.decided(subject, obj, action)
        if allowed is None:
            allowed = await self.policy.check(subject, obj, action)
        return pre_encoded(_ANSWERS[allowed], auth_pb2.CheckResponse)


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, engine: PolicyEngine, token_verifier: TokenVerifier) -> None:
        self.engine = engine
        self.token_verifier = token_verifier

    async def _require_admin(self) -> None:
        subject = current_identity().subject
        if not await self.engine.check(subject, "policy", "admin"):
            raise PermissionDenied("administering the policy needs action 'admin' on 'policy'")

    async def _changed(self) -> None:
        # Read-your-writes here; other instances reload on the NOTIFY.
        await self.engine.reload()

    @authenticated
    async def AddPolicy(
        self, request: policy_pb2.AddPolicyRequest, context: Context
    ) -> policy_pb2.AddPolicyResponse:
        rule = _rule(Violations(), request.policy)
        await self._require_admin()
        added = await self.engine.adapter.add_policy("p", "p", rule)
        await self._changed()
        return policy_pb2.AddPolicyResponse(added=added)

    @authenticated
    async def RemovePolicy(
        self, request: policy_pb2.RemovePolicyRequest, context: Context
    ) -> policy_pb2.RemovePolicyResponse:
        rule = _rule(Violations(), request.policy)
        await self._require_admin()
        removed = await self.engine.adapter.remove_policy("p", "p", rule)
        await self._changed()
        return policy_pb2.RemovePolicyResponse(removed=removed)

    @authenticated
    async def ListPolicies(
        self, request: policy_pb2.ListPoliciesRequest, context: Context
    ) -> policy_pb2.ListPoliciesResponse:
        v = Violations()
        for field in ("subject", "object", "action"):
            _check_field(v, field, getattr(request, field), required=False)
        if request.effect not in (policy_pb2.POLICY_EFFECT_UNSPECIFIED, *_EFFECTS):
            v.add("effect", "an effect, or unspecified for any")
        v.raise_if_any()
        await self._require_admin()
        wanted = [request.subject, request.object, request.action, _EFFECTS.get(request.effect, "")]
        policies = [
            policy_pb2.Policy(
                subject=values[0],
                object=values[1],
                action=values[2],
                effect=_EFFECT_OF.get(values[3], policy_pb2.POLICY_EFFECT_UNSPECIFIED),
            )
            for ptype, values in await self.engine.adapter.rules()
            if ptype == "p"
            and len(values) == 4
            and all(not want or want == have for want, have in zip(wanted, values, strict=True))
        ]
        return policy_pb2.ListPoliciesResponse(policies=policies)

    def _assignment(self, user_id: str, role: str) -> list[str]:
        v = Violations()
        _check_field(v, "user_id", user_id)
        _check_field(v, "role", role)
        v.raise_if_any()
        return [user_id, role]

    @authenticated
    async def AssignRole(
        self, request: policy_pb2.AssignRoleRequest, context: Context
    ) -> policy_pb2.AssignRoleResponse:
        rule = self._assignment(request.user_id, request.role)
        await self._require_admin()
        assigned = await self.engine.adapter.add_policy("g", "g", rule)
        await self._changed()
        return policy_pb2.AssignRoleResponse(assigned=assigned)

    @authenticated
    async def UnassignRole(
        self, request: policy_pb2.UnassignRoleRequest, context: Context
    ) -> policy_pb2.UnassignRoleResponse:
        rule = self._assignment(request.user_id, request.role)
        await self._require_admin()
        unassigned = await self.engine.adapter.remove_policy("g", "g", rule)
        await self._changed()
        return policy_pb2.UnassignRoleResponse(unassigned=unassigned)

    @authenticated
    async def ListUserRoles(
        self, request: policy_pb2.ListUserRolesRequest, context: Context
    ) -> policy_pb2.ListUserRolesResponse:
        v = Violations()
        _check_field(v, "user_id", request.user_id)
        v.raise_if_any()
        if current_identity().subject != request.user_id:
            await self._require_admin()
        roles = await self.engine.roles_of(request.user_id, implicit=request.include_implicit)
        return policy_pb2.ListUserRolesResponse(roles=roles)

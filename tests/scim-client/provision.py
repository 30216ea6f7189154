"""Provisions a directory through the service's SCIM endpoints with a real SCIM client
library (scim2-client, from PyPI), as an identity provider would, and checks each answer.

Run by services/api/tests/scim.rs with SCIM_URL (…/scim/v2) and SCIM_TOKEN in the
environment and the library on PYTHONPATH (deploy/test.sh installs it into
.local/scim-client). Prints one line per step; exits non-zero on the first failure. The last
line is JSON with the ids the Rust test goes on with.
"""

import json
import os
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import (
    Email,
    Group,
    GroupMember,
    PatchOp,
    PatchOperation,
    SCIMException,
    SearchRequest,
    User,
)

client = Client(
    base_url=os.environ["SCIM_URL"],
    headers={"Authorization": f"Bearer {os.environ['SCIM_TOKEN']}"},
)
scim = SyncSCIMClient(client)


def step(text):
    print(f"ok: {text}", flush=True)


def fails_with(status, scim_type, action):
    try:
        action()
    except SCIMException as exc:
        error = exc.to_error()
        assert str(error.status) == str(status), f"status {error.status}, not {status}: {error.detail}"
        if scim_type:
            assert error.scim_type == scim_type, f"scimType {error.scim_type}, not {scim_type}"
        return
    raise AssertionError(f"expected a {status} error")


# Discovery: the service provider configuration, resource types and schemas.
scim.discover()
config = scim.provider.config
assert config.patch.supported and config.filter.supported and not config.bulk.supported
step("discovered the service provider configuration, resource types and schemas")

# Users.
anna = scim.create(
    User(user_name="anna@kp.dk", display_name="Anna Jensen", external_id="oid-anna",
         emails=[Email(value="anna@kp.dk", primary=True)])
)
assert anna.id and anna.user_name == "anna@kp.dk" and anna.active
bo = scim.create(User(user_name="bo@kp.dk", display_name="Bo Hansen"))
carl = scim.create(User(user_name="carl@kp.dk", display_name="Carl Nielsen"))
step("created three users")

fails_with(409, "uniqueness", lambda: scim.create(User(user_name="ANNA@kp.dk")))
step("a second user of the same userName is refused (409 uniqueness)")

found = scim.query(User, query_parameters=SearchRequest(filter='userName eq "anna@kp.dk"'))
assert found.total_results == 1 and found.resources[0].id == anna.id
step("found a user by a userName filter")

page = scim.query(User, query_parameters=SearchRequest(start_index=2, count=1))
assert page.total_results == 3 and page.start_index == 2 and len(page.resources) == 1
assert page.resources[0].user_name == "bo@kp.dk"
step("paged through the users (startIndex 2, count 1)")

carl.display_name = "Carl Emil Nielsen"
carl = scim.replace(carl)
assert scim.query(User, carl.id).display_name == "Carl Emil Nielsen"
step("replaced a user")

scim.modify(User, bo.id, PatchOp[User](operations=[
    PatchOperation[User](op=PatchOperation.Op.replace_, path="active", value=False)]))
assert scim.query(User, bo.id).active is False
step("deactivated a user by PATCH")

fails_with(404, None, lambda: scim.query(User, "00000000-0000-0000-0000-000000000000"))
step("an unknown user is 404")

# Groups.
team = scim.create(Group(display_name="Optagelse", external_id="admissions",
                         members=[GroupMember(value=anna.id)]))
assert team.id and [m.value for m in team.members] == [anna.id]
step("created a group with a member")

found = scim.query(Group, query_parameters=SearchRequest(filter='displayName eq "Optagelse"'))
assert found.total_results == 1 and found.resources[0].id == team.id
step("found a group by a displayName filter")

scim.modify(Group, team.id, PatchOp[Group](operations=[
    PatchOperation[Group](op=PatchOperation.Op.add, path="members",
                          value=[{"value": carl.id}, {"value": bo.id}])]))
members = {m.value for m in scim.query(Group, team.id).members}
assert members == {anna.id, carl.id, bo.id}, members
step("added members by PATCH")

scim.modify(Group, team.id, PatchOp[Group](operations=[
    PatchOperation[Group](op=PatchOperation.Op.remove, path=f'members[value eq "{bo.id}"]')]))
members = {m.value for m in scim.query(Group, team.id).members}
assert members == {anna.id, carl.id}, members
step("removed a member by PATCH")

scim.modify(Group, team.id, PatchOp[Group](operations=[
    PatchOperation[Group](op=PatchOperation.Op.replace_, path="displayName", value="Optagelsen")]))
assert scim.query(Group, team.id).display_name == "Optagelsen"
step("renamed a group by PATCH")

fails_with(400, "invalidFilter", lambda: scim.query(
    User, query_parameters=SearchRequest(filter='userName co "anna"')))
step("an unsupported filter is 400 invalidFilter")

gone = scim.create(Group(display_name="Midlertidig"))
scim.delete(Group, gone.id)
fails_with(404, None, lambda: scim.query(Group, gone.id))
step("deleted a group")

print(json.dumps({"anna": anna.id, "bo": bo.id, "carl": carl.id, "team": team.id}))

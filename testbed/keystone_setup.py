#!/usr/bin/python3
"""Create the testbed's Keystone content through its REST API (idempotent).

A project `demo` with a user `demo` (role member), an application credential of
that user, and the object-store service whose endpoints point at the Keystone-
authenticated Swift proxy. For image sharing: a second project `demo2` with its
own user `demo2` (role member), and two projects `share1`, `share2` without users
(more members than the testbed Glance's image_member_quota of 2 allows); `demo`
is a reader of `share1`, so it finds that project by name among its own. Prints a JSON object with the ids and secrets the
testbed writes to run/env and run/clouds.yaml.

usage: keystone_setup.py KEYSTONE_URL ADMIN_PASSWORD SWIFT_URL STATE_FILE GLANCE_URL
"""
import json
import os
import sys
import urllib.error
import urllib.request

ks, admin_pw, swift_url, state_file, glance_url = sys.argv[1:6]
DEMO_PW = "demo-secret-pw"
DEMO2_PW = "demo2-secret-pw"


def call(method, path, body=None, token=None, ok=(200, 201, 204)):
    req = urllib.request.Request(ks + path, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(req, data, timeout=30) as r:
            text = r.read()
            return r.status, r.headers, (json.loads(text) if text else {})
    except urllib.error.HTTPError as e:
        if e.code in ok:
            return e.code, e.headers, {}
        raise SystemExit("%s %s: %s %s" % (method, path, e.code, e.read()[:300]))


def login(user, pw, project):
    _, h, _ = call("POST", "/v3/auth/tokens", {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": pw}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}})
    return h["X-Subject-Token"]


def find(token, path, key, name):
    _, _, body = call("GET", "%s?name=%s" % (path, name), token=token)
    items = body.get(key, [])
    return items[0]["id"] if items else None


def ensure_service(admin, name, kind, url):
    if find(admin, "/v3/services", "services", name):
        return
    sid = call("POST", "/v3/services", {"service": {"name": name, "type": kind}}, admin)[2]["service"]["id"]
    for iface in ("public", "internal", "admin"):
        call("POST", "/v3/endpoints", {"endpoint": {
            "service_id": sid, "interface": iface, "region_id": "RegionOne", "url": url}}, admin)


def ensure_project(admin, name):
    return find(admin, "/v3/projects", "projects", name) or call(
        "POST", "/v3/projects", {"project": {"name": name, "domain_id": "default"}}, admin)[2]["project"]["id"]


def ensure_user(admin, name, pw):
    return find(admin, "/v3/users", "users", name) or call(
        "POST", "/v3/users", {"user": {"name": name, "domain_id": "default", "password": pw}}, admin)[2]["user"]["id"]


def ensure_sharing(admin, state):
    """The second project and user, and the projects without users (idempotent)."""
    if "demo2_project_id" in state:
        return state
    member = find(admin, "/v3/roles", "roles", "member")
    reader = find(admin, "/v3/roles", "roles", "reader")
    p2 = ensure_project(admin, "demo2")
    u2 = ensure_user(admin, "demo2", DEMO2_PW)
    call("PUT", "/v3/projects/%s/users/%s/roles/%s" % (p2, u2, member), token=admin)
    s1 = ensure_project(admin, "share1")
    s2 = ensure_project(admin, "share2")
    call("PUT", "/v3/projects/%s/users/%s/roles/%s" % (s1, state["user_id"], reader), token=admin)
    state.update({"demo2_project_id": p2, "demo2_user_id": u2, "demo2_password": DEMO2_PW,
                  "share1_project_id": s1, "share2_project_id": s2})
    with open(state_file, "w") as f:
        json.dump(state, f)
    return state


if os.path.exists(state_file):
    admin = login("admin", admin_pw, "admin")
    ensure_service(admin, "glance", "image", glance_url)
    print(json.dumps(ensure_sharing(admin, json.load(open(state_file)))))
    sys.exit(0)

admin = login("admin", admin_pw, "admin")
ensure_service(admin, "glance", "image", glance_url)
project = ensure_project(admin, "demo")
user = ensure_user(admin, "demo", DEMO_PW)
member = find(admin, "/v3/roles", "roles", "member")
call("PUT", "/v3/projects/%s/users/%s/roles/%s" % (project, user, member), token=admin)

service = find(admin, "/v3/services", "services", "swift")
if not service:
    service = call("POST", "/v3/services", {"service": {"name": "swift", "type": "object-store"}}, admin)[2]["service"]["id"]
    for iface in ("public", "internal", "admin"):
        call("POST", "/v3/endpoints", {"endpoint": {
            "service_id": service, "interface": iface, "region_id": "RegionOne",
            "url": swift_url + "/v1/AUTH_$(project_id)s"}}, admin)

demo = login("demo", DEMO_PW, "demo")
_, _, ac = call("POST", "/v3/users/%s/application_credentials" % user,
                {"application_credential": {"name": "k5up-testbed"}}, demo)
state = {
    "project_id": project, "user_id": user, "demo_password": DEMO_PW,
    "app_cred_id": ac["application_credential"]["id"],
    "app_cred_secret": ac["application_credential"]["secret"],
}
with open(state_file, "w") as f:
    json.dump(state, f)
print(json.dumps(ensure_sharing(admin, state)))

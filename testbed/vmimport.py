#!/usr/bin/python3
"""An emulator of Fujitsu K5's vmimport API (no public implementation exists).

It follows the documented API (IaaS API Reference, "Register image", "Retrieve
image registration status", "List image registration status") and checks what the
real service checks, against the real testbed services:

- every request needs X-Auth-Token, validated by the real Keystone; imports are
  scoped to the token's project;
- POST /v1/imageimport: `name`, `location`, `os_type` required; `os_type` from the
  documented list; `location` = /v1/AUTH_<the token's project>/<container>/<object>
  with the object name ending in `.vmdk`; the object must exist in the real Swift;
  `id` (optional) a UUID not used by another import; `min_ram`/`min_disk` integers;
  `checksum` (optional) a SHA-1; `conversion`, `user_name`, `password` (base64),
  `domain_name`, when given (or always, with --require-conversion), must log in to
  Keystone. Answer 201 with `import_id`.
- the import then walks queued -> processing (and back once, as the docs warn) ->
  succeeded/failed with progress 0-100, reading the whole object from Swift: it
  fails if the content is not a VMDK (sparse/stream-optimised "KDMV" extent or a
  descriptor) or if its SHA-1 differs from `checksum`.
- GET /v1/imageimport/<import_id>/status; GET /v1/imageimport?start=&limit= (at
  most 100, newest first).
- with --glance: a succeeded import is registered in the region's Glance, as K5
  does, under the requested image id, owned by the token's project, `private`
  (the object's bytes are stored as they are: the emulator converts nothing).

usage: vmimport.py --port P --keystone URL --swift URL --state DIR [--duration S] [--glance URL]
"""
import argparse
import base64
import hashlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlparse

OS_TYPES = ["win2008R2SE", "win2008R2EE", "win2012SE", "win2012R2SE", "win2016SE_ja",
            "win2016SE_en", "rhel6", "rhel7", "centos", "ubuntu"]
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--keystone", required=True)
ap.add_argument("--swift", required=True)
ap.add_argument("--state", required=True)
ap.add_argument("--duration", type=float, default=2.0, help="least seconds an import takes")
ap.add_argument("--glance", help="register succeeded imports in this Glance")
ap.add_argument("--require-conversion", action="store_true",
                help="behave like a region that needs conversion/user_name/password/domain_name")
ARGS = ap.parse_args()
os.makedirs(ARGS.state, exist_ok=True)

LOCK = threading.Lock()
IMPORTS = []  # newest last; dicts


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def keystone_project(token):
    """The project id of a valid project-scoped token, else None."""
    req = urllib.request.Request(ARGS.keystone + "/v3/auth/tokens?nocatalog",
                                 headers={"X-Auth-Token": token, "X-Subject-Token": token,
                                          "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError:
        return None
    return body.get("token", {}).get("project", {}).get("id")


def keystone_login(user, password, domain):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": domain}, "password": password}}}}}
    req = urllib.request.Request(ARGS.keystone + "/v3/auth/tokens", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status == 201
    except urllib.error.HTTPError:
        return False


def swift_request(method, location, token):
    req = urllib.request.Request(ARGS.swift + quote(location), headers={"X-Auth-Token": token}, method=method)
    return urllib.request.urlopen(req, timeout=60)


def public(imp):
    out = {k: imp[k] for k in ("import_id", "name", "location", "id", "min_ram", "min_disk", "os_type",
                               "import_status", "progress", "disk_format", "container_format")}
    if imp.get("checksum"):
        out["checksum"] = imp["checksum"]
    if imp["import_status"] == "failed":
        out["error_code"] = imp["error_code"]
        out["error_message"] = imp["error_message"]
    return out


def save_state():
    with open(os.path.join(ARGS.state, "imports.json.tmp"), "w") as f:
        json.dump([public(i) | {"project": i["project"]} for i in IMPORTS], f, indent=1)
    os.replace(os.path.join(ARGS.state, "imports.json.tmp"), os.path.join(ARGS.state, "imports.json"))


def set_state(imp, status, progress=None, **extra):
    with LOCK:
        imp["import_status"] = status
        if progress is not None:
            imp["progress"] = progress
        imp.update(extra)
        save_state()


def fail(imp, code, msg):
    log("import %s failed: %s" % (imp["import_id"], msg))
    set_state(imp, "failed", error_code=code, error_message=msg)


def process(imp, token):
    """The import itself: read the object back, check it, register it."""
    step = ARGS.duration / 10.0
    time.sleep(step)
    set_state(imp, "processing", 0)
    time.sleep(step)
    set_state(imp, "queued")  # the docs: status may go back and forth
    time.sleep(step)
    set_state(imp, "processing")
    try:
        resp = swift_request("GET", imp["location"], token)
    except urllib.error.HTTPError as e:
        return fail(imp, "IMPORT_OBJECT_UNREADABLE", "cannot read %s: HTTP %d" % (imp["location"], e.code))
    size = int(resp.headers.get("Content-Length") or 0)
    sha1 = hashlib.sha1()
    head = b""
    done = 0
    last = time.monotonic()
    while True:
        chunk = resp.read(1 << 20)
        if not chunk:
            break
        if len(head) < 64:
            head += chunk[:64]
        sha1.update(chunk)
        done += len(chunk)
        if time.monotonic() - last > 0.2 and size:
            last = time.monotonic()
            set_state(imp, "processing", min(89, int(done * 90 / size)))
    if not (head.startswith(b"KDMV") or head.startswith(b"# Disk DescriptorFile")):
        return fail(imp, "IMPORT_INVALID_IMAGE", "the object is not a VMDK image")
    if imp.get("checksum") and imp["checksum"].lower() != sha1.hexdigest():
        return fail(imp, "IMPORT_CHECKSUM_MISMATCH",
                    "checksum mismatch: given %s, object has %s" % (imp["checksum"], sha1.hexdigest()))
    for p in (90, 95):
        set_state(imp, "processing", p)
        time.sleep(step)
    if ARGS.glance:
        try:
            register(imp, token)
        except (urllib.error.URLError, OSError, ValueError) as e:
            detail = e.read()[:200] if isinstance(e, urllib.error.HTTPError) else e
            return fail(imp, "IMPORT_REGISTRATION_FAILED", "cannot register the image in Glance: %s" % detail)
    set_state(imp, "succeeded", 100)
    log("import %s of %s succeeded (image %s, %d bytes, sha1 %s)" % (
        imp["import_id"], imp["location"], imp["id"], done, sha1.hexdigest()))


def register(imp, token):
    """Creates the image in Glance with the import's id and stores the object's bytes."""
    body = {"id": imp["id"], "name": imp["name"], "disk_format": "raw", "container_format": "bare",
            "visibility": "private", "min_ram": imp["min_ram"], "min_disk": imp["min_disk"],
            "k5_import_id": imp["import_id"]}
    req = urllib.request.Request(ARGS.glance + "/v2/images", data=json.dumps(body).encode(), method="POST",
                                 headers={"X-Auth-Token": token, "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=60).close()
    obj = swift_request("GET", imp["location"], token)
    put = urllib.request.Request(ARGS.glance + "/v2/images/%s/file" % imp["id"], data=obj, method="PUT",
                                 headers={"X-Auth-Token": token, "Content-Type": "application/octet-stream",
                                          "Content-Length": obj.headers["Content-Length"]})
    urllib.request.urlopen(put, timeout=600).close()
    log("import %s: image %s registered in Glance" % (imp["import_id"], imp["id"]))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        log("%s %s" % (self.address_string(), fmt % a))

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Openstack-Request-Id", "req-" + str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, msg):
        titles = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 409: "Conflict"}
        self.reply(code, {"error": {"code": code, "title": titles.get(code, "Error"), "message": msg}})

    def auth(self):
        token = self.headers.get("X-Auth-Token")
        project = keystone_project(token) if token else None
        if not project:
            self.error(401, "The request you have made requires authentication.")
        return token, project

    def do_GET(self):
        url = urlparse(self.path)
        if url.path in ("/", "/v1", "/v1/"):
            return self.reply(200, {"versions": [{"id": "v1", "status": "CURRENT"}]})
        token, project = self.auth()
        if not project:
            return
        m = re.fullmatch(r"/v1/imageimport/([^/]+)/status", url.path)
        if m:
            with LOCK:
                found = [i for i in IMPORTS if i["import_id"] == m.group(1) and i["project"] == project]
                body = public(found[0]) if found else None
            return self.reply(200, body) if body else self.error(404, "import %s not found" % m.group(1))
        if url.path.rstrip("/") == "/v1/imageimport":
            q = parse_qs(url.query)
            try:
                start = int(q.get("start", ["0"])[0])
                limit = min(100, int(q.get("limit", ["100"])[0]))
            except ValueError:
                return self.error(400, "start and limit must be integers")
            with LOCK:
                mine = [i for i in reversed(IMPORTS) if i["project"] == project][start:start + limit]
                items = [{"import_id": i["import_id"], "import_status": i["import_status"],
                          "status": "/v1/imageimport/%s/status" % i["import_id"]} for i in mine]
            return self.reply(200, {"imports": items})
        self.error(404, "no such resource")

    def do_POST(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        token, project = self.auth()
        if not project:
            return
        if url.path.rstrip("/") != "/v1/imageimport":
            return self.error(404, "no such resource")
        try:
            body = json.loads(raw or b"{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return self.error(400, "the request body is not a JSON object")
        for field in ("name", "location", "os_type"):
            if not isinstance(body.get(field), str) or not body[field]:
                return self.error(400, "%s is required" % field)
        if body["os_type"] not in OS_TYPES:
            return self.error(400, "os_type %s is not supported; use one of %s" % (body["os_type"], ", ".join(OS_TYPES)))
        m = re.fullmatch(r"/v1/AUTH_([^/]+)/([^/]+)/(.+)", body["location"])
        if not m:
            return self.error(400, "location must be /v1/AUTH_<project_id>/<container>/<object>")
        if m.group(1) != project:
            return self.error(400, "location names project %s, not the token's project" % m.group(1))
        if not m.group(3).endswith(".vmdk"):
            return self.error(400, "the object name must end with .vmdk")
        for field in ("min_ram", "min_disk"):
            if field in body and (not isinstance(body[field], int) or body[field] < 0):
                return self.error(400, "%s must be a non-negative integer" % field)
        checksum = body.get("checksum")
        if checksum is not None and not re.fullmatch(r"[0-9a-fA-F]{40}", str(checksum)):
            return self.error(400, "checksum must be a SHA-1 (40 hex digits)")
        image_id = body.get("id") or str(uuid.uuid4())
        if not UUID_RE.match(str(image_id)):
            return self.error(400, "id must be a UUID")
        cred_fields = ("conversion", "user_name", "password", "domain_name")
        if ARGS.require_conversion or any(f in body for f in cred_fields):
            missing = [f for f in cred_fields if f not in body]
            if missing:
                return self.error(400, "%s required in this region" % ", ".join(missing))
            try:
                pw = base64.b64decode(body["password"], validate=True).decode()
            except ValueError:
                return self.error(400, "password must be base64")
            if not keystone_login(body["user_name"], pw, body["domain_name"]):
                return self.error(400, "user_name/password/domain_name are not valid")
        with LOCK:
            if any(i["id"] == image_id and i["import_status"] != "failed" for i in IMPORTS):
                return self.error(409, "image id %s is already registered or being imported" % image_id)
        try:
            swift_request("HEAD", body["location"], token).close()
        except urllib.error.HTTPError as e:
            return self.error(400, "the object %s does not exist (HTTP %d)" % (body["location"], e.code))
        imp = {"import_id": str(uuid.uuid4()), "project": project, "name": body["name"],
               "location": body["location"], "id": image_id, "min_ram": body.get("min_ram", 0),
               "min_disk": body.get("min_disk", 0), "os_type": body["os_type"], "checksum": checksum,
               "import_status": "queued", "progress": 0, "disk_format": "raw", "container_format": "bare"}
        with LOCK:
            IMPORTS.append(imp)
            save_state()
        log("import %s of %s accepted (image %s)" % (imp["import_id"], imp["location"], image_id))
        threading.Thread(target=process, args=(imp, token), daemon=True).start()
        self.reply(201, {"import_id": imp["import_id"]})


ThreadingHTTPServer.daemon_threads = True
log("vmimport emulator on 127.0.0.1:%d (Keystone %s, Swift %s)" % (ARGS.port, ARGS.keystone, ARGS.swift))
ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler).serve_forever()

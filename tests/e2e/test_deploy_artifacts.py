"""The deployment artifacts (deploy/, collector/, dashboards/) are well-formed and say
what the daemon really does:

  - every YAML and JSON file parses; Kubernetes objects have apiVersion/kind/name, the
    DaemonSet (plain and Helm) is least-privilege as documented (hostPID, exactly the
    five capabilities, not privileged, read-only root, read-only host mounts, NODE_NAME
    from the downward API, /healthz probes, requests and limits);
  - every isotraced configuration shipped (deploy/isotrace.yaml, the ConfigMap, the Helm
    values) passes `isotraced --validate-config`; the systemd unit passes
    `systemd-analyze verify`; every `.Values.x` a Helm template reads exists;
  - Collector configs: every pipeline component is defined, memory_limiter first,
    k8sattributes associates by k8s.pod.uid and container.id, spans are balanced by trace
    id, tail sampling keeps isotrace verdicts and errors; the Kubernetes ConfigMaps embed
    exactly collector/*.yaml; Prometheus config and rules pass promtool, and so does every
    PromQL expression of the dashboards;
  - every metric name the dashboards and rules reference is served by a live isotraced's
    /metrics (scraped after real traffic), and /healthz answers.

kubectl cannot dry-run without an API server (it fetches the discovery document even with
--dry-run=client), so the Kubernetes checks are structural.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

try:
    import yaml
except ImportError:  # a Python outside Debian's: use Debian's python3-yaml (pure Python part)
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import yaml
    except ImportError:
        h.fail("PyYAML missing: scripts/install-deps.sh installs python3-yaml")

SRC = h.SRC
CAPS = {"BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"}
HOST_MOUNTS = {"/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/cgroup", "/var/log/pods"}
errors = []


def err(msg):
    errors.append(msg)


def rel(p):
    return os.path.relpath(p, SRC)


# ---- parsing -------------------------------------------------------------------------

def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def all_files(patterns):
    out = []
    for p in patterns:
        out += glob.glob(os.path.join(SRC, p), recursive=True)
    return sorted(set(out))


def check_parse():
    docs = {}
    for p in all_files(["deploy/**/*.yaml", "deploy/**/*.yml", "collector/**/*.yaml", "collector/**/*.yml",
                        "dashboards/**/*.yaml"]):
        if "/templates/" in p:
            continue  # Helm templates are Go templates, checked below
        try:
            docs[p] = load_yaml_docs(p)
        except yaml.YAMLError as e:
            err("%s: YAML does not parse: %s" % (rel(p), e))
    dashboards = {}
    for p in all_files(["dashboards/*.json"]):
        try:
            with open(p) as f:
                dashboards[p] = json.load(f)
        except ValueError as e:
            err("%s: JSON does not parse: %s" % (rel(p), e))
    if not dashboards:
        err("no dashboards in dashboards/")
    return docs, dashboards


# ---- Kubernetes ----------------------------------------------------------------------

def check_k8s_objects(docs):
    for p, ds in docs.items():
        if "/kubernetes/" not in p:
            continue
        for d in ds:
            if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") \
                    or not d.get("metadata", {}).get("name"):
                err("%s: object without apiVersion/kind/metadata.name: %s" % (rel(p), str(d)[:80]))


def check_daemonset(ds, where):
    spec = ds["spec"]["template"]["spec"]
    if spec.get("hostPID") is not True:
        err(where + ": hostPID must be true")
    # kube-proxy's translations are in the node's conntrack table (docs/locate.md).
    if spec.get("hostNetwork") is not True or spec.get("dnsPolicy") != "ClusterFirstWithHostNet":
        err(where + ": hostNetwork: true with dnsPolicy: ClusterFirstWithHostNet (node conntrack)")
    if spec.get("automountServiceAccountToken") is not False:
        err(where + ": the daemon needs no API token (automountServiceAccountToken: false)")
    c = spec["containers"][0]
    sc = c.get("securityContext", {})
    if sc.get("privileged") is not False:
        err(where + ": must say privileged: false")
    if sc.get("readOnlyRootFilesystem") is not True:
        err(where + ": root filesystem must be read-only")
    if sc.get("allowPrivilegeEscalation") is not False:
        err(where + ": allowPrivilegeEscalation must be false")
    caps = sc.get("capabilities", {})
    if set(caps.get("add", [])) != CAPS:
        err(where + ": capabilities %s, want exactly %s" % (caps.get("add"), sorted(CAPS)))
    if caps.get("drop") != ["ALL"]:
        err(where + ": capabilities must drop ALL")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounted = {}
    for m in c.get("volumeMounts", []):
        v = volumes.get(m["name"])
        if v is None:
            err(where + ": mount %s has no volume" % m["name"])
            continue
        if "hostPath" in v:
            if m.get("readOnly") is not True:
                err(where + ": host path %s mounted read-write" % v["hostPath"]["path"])
            mounted[v["hostPath"]["path"]] = m["mountPath"]
    for hp in HOST_MOUNTS:
        if hp not in mounted:
            err(where + ": host path %s not mounted" % hp)
    if any(p in ("/run/containerd", "/var/run/containerd", "/run/docker.sock", "/var/run") for p in mounted):
        err(where + ": mounts a container runtime socket directory: %s" % sorted(mounted))
    env = {e["name"]: e for e in c.get("env", [])}
    node = env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if node != "spec.nodeName":
        err(where + ": NODE_NAME must come from the downward API (spec.nodeName)")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for probe in ("livenessProbe", "readinessProbe"):
        g = c.get(probe, {}).get("httpGet", {})
        if g.get("path") != "/healthz" or g.get("port") not in ports:
            err(where + ": %s must GET /healthz on a declared port, got %s" % (probe, g))
    res = c.get("resources", {})
    for k in ("requests", "limits"):
        if not res.get(k, {}).get("memory") or not res.get(k, {}).get("cpu"):
            err(where + ": resources.%s needs cpu and memory" % k)
    return c


def validate_isotraced_config(text, where):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        r = subprocess.run([h.ISOTRACED, "--validate-config", "--config", path], capture_output=True, text=True,
                           timeout=30, env=env)
        if r.returncode != 0:
            err("%s: isotraced --validate-config refused it: %s" % (where, (r.stderr or r.stdout).strip()))
    finally:
        os.unlink(path)


def check_deploy(docs):
    if not os.access(h.ISOTRACED, os.X_OK):
        h.fail("isotraced not built at " + h.ISOTRACED)
    with open(os.path.join(SRC, "deploy/isotrace.yaml")) as f:
        validate_isotraced_config(f.read(), "deploy/isotrace.yaml")

    plain = docs.get(os.path.join(SRC, "deploy/kubernetes/isotrace.yaml"), [])
    kinds = {d["kind"]: d for d in plain}
    for k in ("Namespace", "ServiceAccount", "ConfigMap", "DaemonSet"):
        if k not in kinds:
            err("deploy/kubernetes/isotrace.yaml: no %s" % k)
    if "DaemonSet" in kinds:
        check_daemonset(kinds["DaemonSet"], "deploy/kubernetes DaemonSet")
        cm_name = next((v["configMap"]["name"] for v in kinds["DaemonSet"]["spec"]["template"]["spec"]["volumes"]
                        if "configMap" in v), None)
        if "ConfigMap" in kinds:
            if kinds["ConfigMap"]["metadata"]["name"] != cm_name:
                err("the DaemonSet mounts ConfigMap %s, the file defines %s" % (cm_name, kinds["ConfigMap"]["metadata"]["name"]))
            for key, text in kinds["ConfigMap"]["data"].items():
                validate_isotraced_config(text, "deploy/kubernetes ConfigMap " + key)

    # Helm: the chart's metadata, its values' config, and every .Values reference.
    chart = os.path.join(SRC, "deploy/helm/isotrace")
    meta = docs.get(os.path.join(chart, "Chart.yaml"), [{}])[0]
    for k in ("apiVersion", "name", "version", "appVersion"):
        if not meta.get(k):
            err("Chart.yaml lacks %s" % k)
    values = docs.get(os.path.join(chart, "values.yaml"), [{}])[0]
    validate_isotraced_config(yaml.safe_dump(values.get("config", {})), "helm values.config")
    for t in glob.glob(os.path.join(chart, "templates/*")):
        text = open(t).read()
        if "{{" in re.sub(r"\{\{.*?\}\}", "", text):
            err("%s: a {{ without its }}" % rel(t))
        for ref in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            node = values
            for part in ref.strip(".").split("."):
                if not isinstance(node, dict) or part not in node:
                    err("%s reads .Values%s, which values.yaml does not define" % (rel(t), ref))
                    break
                node = node[part]
        if t.endswith("daemonset.yaml"):
            # The plain manifest's security posture, rendered by hand where Helm is absent.
            # Lines that are only template actions (with/end/toYaml blocks) go; inline
            # actions become a placeholder scalar.
            lines = [ln for ln in text.splitlines() if not re.fullmatch(r"\s*\{\{.*?\}\}\s*", ln)]
            rendered = re.sub(r"\{\{.*?\}\}", "x", "\n".join(lines))
            try:
                ds = yaml.safe_load(rendered)
                c = ds["spec"]["template"]["spec"]["containers"][0]
                if set(c["securityContext"]["capabilities"]["add"]) != CAPS:
                    err("helm daemonset: capabilities differ from the plain manifest")
                if ds["spec"]["template"]["spec"].get("hostPID") is not True:
                    err("helm daemonset: hostPID must be true")
                if c["securityContext"].get("readOnlyRootFilesystem") is not True or \
                        c["securityContext"].get("privileged") is not False:
                    err("helm daemonset: must be read-only root, not privileged")
                probes = [c.get(p, {}).get("httpGet", {}).get("path") for p in ("livenessProbe", "readinessProbe")]
                if probes != ["/healthz", "/healthz"]:
                    err("helm daemonset: probes %s" % probes)
            except (yaml.YAMLError, KeyError, TypeError, IndexError) as e:
                err("helm daemonset: cannot read its structure: %r" % e)

    # systemd.
    unit = os.path.join(SRC, "deploy/systemd/isotraced.service")
    text = open(unit).read()
    for needle in ("CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYS_RESOURCE CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_NET_ADMIN",
                   "--validate-config", "KillSignal=SIGTERM"):
        if needle not in text:
            err("isotraced.service lacks %s" % needle)
    if shutil.which("systemd-analyze"):
        with tempfile.TemporaryDirectory() as d:
            local = os.path.join(d, "isotraced.service")
            with open(local, "w") as f:
                f.write(text.replace("/usr/local/bin/isotraced", h.ISOTRACED))
            r = subprocess.run(["systemd-analyze", "verify", local], capture_output=True, text=True, timeout=60)
            if r.returncode != 0 or r.stderr.strip():
                err("systemd-analyze verify: %s" % (r.stderr or r.stdout).strip())

    # Dockerfile: multi-stage Debian, build packages = install-deps.sh's `run` profile.
    df = open(os.path.join(SRC, "deploy/Dockerfile")).read()
    froms = re.findall(r"^FROM\s+(\S+)", df, re.M)
    if len(froms) < 2 or not all(f.startswith("debian:") for f in froms):
        err("Dockerfile: want a multi-stage Debian build, got FROM %s" % froms)
    deps = open(os.path.join(SRC, "scripts/install-deps.sh")).read()
    build_part = deps.split('if [ "$profile" = test ]')[0]
    wanted = {p for p in re.findall(r"\b([a-z0-9][a-z0-9.+-]*-dev)\b", build_part)} - {
        "libgtest-dev", "libgmock-dev", "libbenchmark-dev"}
    missing = sorted(p for p in wanted if p not in df)
    if missing:
        err("Dockerfile build stage lacks packages scripts/install-deps.sh builds with: %s" % missing)


# ---- Collector -----------------------------------------------------------------------

def check_collector_config(cfg, where):
    svc = cfg.get("service", {})
    for name, pipe in svc.get("pipelines", {}).items():
        for kind in ("receivers", "processors", "exporters"):
            for comp in pipe.get(kind, []):
                if comp not in (cfg.get(kind) or {}):
                    err("%s: pipeline %s uses %s %s, which is not defined" % (where, name, kind[:-1], comp))
        procs = pipe.get("processors", [])
        if not procs or procs[0] != "memory_limiter":
            err("%s: pipeline %s must start with memory_limiter" % (where, name))
        if procs and procs[-1] != "batch":
            err("%s: pipeline %s should end with batch" % (where, name))
    for ext in svc.get("extensions", []):
        if ext not in (cfg.get("extensions") or {}):
            err("%s: extension %s not defined" % (where, ext))


def check_collector(docs):
    agent = docs.get(os.path.join(SRC, "collector/agent.yaml"), [{}])[0]
    gateway = docs.get(os.path.join(SRC, "collector/gateway.yaml"), [{}])[0]
    check_collector_config(agent, "collector/agent.yaml")
    check_collector_config(gateway, "collector/gateway.yaml")
    k8s = agent.get("processors", {}).get("k8sattributes", {})
    assoc = [s.get("name") for a in k8s.get("pod_association", []) for s in a.get("sources", [])]
    if "k8s.pod.uid" not in assoc or "container.id" not in assoc:
        err("agent k8sattributes must associate by k8s.pod.uid and container.id, got %s" % assoc)
    lb = agent.get("exporters", {}).get("loadbalancing", {})
    if lb.get("routing_key") != "traceID":
        err("agent: spans must be load-balanced by traceID")
    if agent.get("service", {}).get("pipelines", {}).get("traces", {}).get("exporters") != ["loadbalancing"]:
        err("agent: the traces pipeline must export through loadbalancing")
    ts = gateway.get("processors", {}).get("tail_sampling", {})
    pol = json.dumps(ts.get("policies", []))
    if "isotrace.verdict" not in pol or '"ERROR"' not in pol:
        err("gateway tail_sampling must keep traces with an isotrace verdict and errors: %s" % pol[:200])
    if "tail_sampling" not in gateway.get("service", {}).get("pipelines", {}).get("traces", {}).get("processors", []):
        err("gateway: tail_sampling not in the traces pipeline")
    exps = gateway.get("exporters", {})
    if not any(k.startswith("otlp") and ("tempo" in k or "jaeger" in k) for k in exps):
        err("gateway: no OTLP exporter to Tempo or Jaeger")
    if "prometheus" not in exps and "prometheusremotewrite" not in exps:
        err("gateway: no Prometheus exporter")

    # The manifests embed exactly the files.
    embedded = {}
    for p, ds in docs.items():
        if "/collector/kubernetes/" in p:
            for d in ds:
                if d.get("kind") == "ConfigMap":
                    for k, v in d.get("data", {}).items():
                        embedded[k] = v
    for name in ("agent.yaml", "gateway.yaml", "prometheus.yml", "isotrace-rules.yml"):
        with open(os.path.join(SRC, "collector", name)) as f:
            text = f.read()
        if name not in embedded:
            err("collector/kubernetes: no ConfigMap embeds %s" % name)
        elif yaml.safe_load(embedded[name]) != yaml.safe_load(text):
            err("collector/kubernetes: the embedded %s differs from collector/%s" % (name, name))
    dsets = [d for p, ds in docs.items() if "/collector/kubernetes/" in p for d in ds
             if d.get("kind") in ("DaemonSet", "Deployment")]
    if len(dsets) < 2:
        err("collector/kubernetes: want the agent DaemonSet and the gateway Deployment")

    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "config", os.path.join(SRC, "collector/prometheus.yml")],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            err("promtool check config: " + (r.stdout + r.stderr).strip())
    else:
        err("promtool missing (Debian package prometheus, scripts/install-deps.sh)")


# ---- metric names ----------------------------------------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def metric_names(expr):
    """Metric names a PromQL expression reads (Grafana variables tolerated)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)            # strings
    e = re.sub(r"\{[^}]*\}", "", e)                           # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                          # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)                        # $__rate_interval, $service
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_queries(dashboards):
    """(where, PromQL) for every Prometheus query in the dashboards, template queries too."""
    out = []
    for p, d in dashboards.items():
        for v in d.get("templating", {}).get("list", []):
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if v.get("type") == "query" and q:
                m = re.match(r"label_values\((.*),\s*\w+\)\s*$", q)
                out.append(("%s variable %s" % (rel(p), v["name"]), m.group(1) if m else q))
        for panel in d.get("panels", []):
            ptype = (panel.get("datasource") or {}).get("type")
            for t in panel.get("targets", []):
                ttype = (t.get("datasource") or {}).get("type", ptype)
                if ttype == "prometheus":
                    if not t.get("expr"):
                        err("%s panel %r: a Prometheus target without expr" % (rel(p), panel.get("title")))
                    else:
                        out.append(("%s panel %r" % (rel(p), panel.get("title")), t["expr"]))
                elif ttype != "tempo":
                    err("%s panel %r: unknown data source type %r" % (rel(p), panel.get("title"), ttype))
    return out


def check_dashboards(dashboards):
    uids = [d.get("uid") for d in dashboards.values()]
    if len(set(uids)) != len(uids) or None in uids:
        err("dashboards need unique uids: %s" % uids)
    for p, d in dashboards.items():
        ids = [pn.get("id") for pn in d.get("panels", [])]
        if len(set(ids)) != len(ids):
            err("%s: duplicate panel ids" % rel(p))
        for pn in d.get("panels", []):
            if not pn.get("gridPos") or not pn.get("targets"):
                err("%s panel %r: needs gridPos and targets" % (rel(p), pn.get("title")))
    prov = os.path.join(SRC, "dashboards/provisioning")
    if not glob.glob(prov + "/dashboards/*.yaml") or not glob.glob(prov + "/datasources/*.yaml"):
        err("dashboards/provisioning needs dashboards/ and datasources/ provider files")
    queries = dashboard_queries(dashboards)
    # Every expression must be valid PromQL: promtool parses them as recording rules.
    if shutil.which("promtool"):
        rules = {"groups": [{"name": "dashboards", "rules": [
            {"record": "dashboard:q%d" % i,
             "expr": re.sub(r"\$\{?\w+\}?", lambda m: "5m" if "interval" in m.group(0) else ".*", q)}
            for i, (_, q) in enumerate(queries)]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            yaml.safe_dump(rules, f)
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True, timeout=60)
        os.unlink(f.name)
        if r.returncode != 0:
            err("dashboard PromQL does not parse: " + (r.stdout + r.stderr).strip()[-2000:])
    return queries


def rule_queries():
    out = []
    path = os.path.join(SRC, "collector/isotrace-rules.yml")
    for g in yaml.safe_load(open(path)).get("groups", []):
        for r in g.get("rules", []):
            out.append(("collector/isotrace-rules.yml %s" % (r.get("alert") or r.get("record")), r["expr"]))
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            err("promtool check rules: " + (r.stdout + r.stderr).strip())
    return out


def scrape_live():
    """Starts isotraced exporting to the npm receiver, drives HTTP traffic (server and
    client spans), returns the sample names of its /metrics and whether /healthz said ok."""
    import faults as f
    with h.Procs() as procs:
        recv = f.ControlledReceiver(procs)
        recv.start()
        port = h.free_port()
        f.start_nginx_single(procs, port)
        mport = h.free_port()
        daemon = h.start_daemon(procs, "--otlp-endpoint", recv.endpoint, "--prometheus-listen",
                                "127.0.0.1:%d" % mport, "--api-socket", "", "--summary-interval", "0")
        # /metrics and /healthz start just after the probes attach (the line start_daemon
        # waits for): poll like a readiness probe does.
        health = None
        for _ in range(50):
            try:
                health = urllib.request.urlopen("http://127.0.0.1:%d/healthz" % mport, timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        if health is None:
            h.fail("isotraced's /healthz did not answer within 10 s:\n" + procs.log(daemon)[-2000:])
        reqs = f.Requests(port, "m")
        for _ in range(100):
            reqs.one()
        f.wrk(port, 1, conns=2, threads=1)
        # Self-telemetry is refreshed once a second; spans become metrics as they end.
        text = ""
        for _ in range(50):
            text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5).read().decode()
            if "http_client_request_duration_seconds_count" in text and "isotrace_export_spans_sent_total" in text:
                break
            time.sleep(0.2)
        if daemon.poll() is not None:
            h.fail("isotraced died while scraped:\n" + procs.log(daemon)[-2000:])
        names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
        return names, health


def main():
    docs, dashboards = check_parse()
    check_k8s_objects(docs)
    check_deploy(docs)
    check_collector(docs)
    queries = check_dashboards(dashboards) + rule_queries()
    referenced = {}
    for where, q in queries:
        for n in metric_names(q):
            referenced.setdefault(n, where)
    if not referenced:
        err("no metric names found in the dashboards and rules")
    if errors:
        print("\n".join(errors))
        h.fail("%d problems in the artifacts" % len(errors))
    print("static checks passed: %d YAML files, %d dashboards, %d PromQL queries naming %d metrics"
          % (len(docs), len(dashboards), len(queries), len(referenced)))

    served, health = scrape_live()
    if health.strip() != b"ok":
        err("/healthz answered %r" % health)
    for name, where in sorted(referenced.items()):
        if name not in served:
            err("%s references %s, which isotraced's /metrics does not serve" % (where, name))
    if errors:
        print("\n".join(errors))
        print("served: " + " ".join(sorted(served)))
        h.fail("%d problems" % len(errors))
    print("live /metrics serves all %d referenced metric names: %s" % (len(referenced), " ".join(sorted(referenced))))
    print("PASS")


if __name__ == "__main__":
    main()

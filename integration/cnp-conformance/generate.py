#!/usr/bin/env python3
"""Ports the ClusterNetworkPolicy conformance suite of kubernetes-sigs/network-policy-api
(conformance/tests/*.go, conformance/base/**) to lab scenarios
integration/scenarios/cnp-conformance-*.yaml and their .expected.json.

Usage: generate.py UPSTREAM_CHECKOUT OUTPUT_DIR   (e.g. OUTPUT_DIR = integration/scenarios)

UPSTREAM_CHECKOUT is a tree of network-policy-api at UPSTREAM_REF (below). Not run by CI: the
scenarios it wrote are committed, and `lab_scenarios` runs them like every other scenario.

Nothing here runs nftpol. Each upstream test's policies are read from its own fixture file,
mutated exactly as the test mutates them, state by state; the expectation of every probe in the
8 x 8 (x 4 ports) matrix comes from the spec's evaluation order written down in `decide` below
(Admin by priority, first matching rule; then NetworkPolicy when it isolates the direction; then
Baseline; then allowed; a connection needs egress at the source and ingress at the destination).
Every PokeServer assertion of the upstream test (parsed from the Go source, with the state it
runs in) is checked against that expectation: a disagreement stops the generator.
"""

import copy
import ipaddress
import json
import os
import re
import sys

import yaml

# main after v0.2.0: v0.2.0 plus the namespace-relabel steps of the two inline-CIDR tests.
UPSTREAM_REF = "kubernetes-sigs/network-policy-api@0eec1b0"
HOUSES = {
    "gryffindor": "harry-potter",
    "slytherin": "draco-malfoy",
    "hufflepuff": "cedric-diggory",
    "ravenclaw": "luna-lovegood",
}
NS_PREFIX = "network-policy-conformance-"
# Upstream picks free host ports at random; these are fixed stand-ins for
# s.HostNetworkPorts[0..7] (0, 1: TCP; 2, 4: UDP; 3, 5: netexec HTTP; 6, 7: SCTP).
HOST_PORTS = [34345, 34346, 34347, 34348, 34349, 34350, 34351, 34352]
POD_PORTS = [(80, "TCP", "web"), (8080, "TCP", None), (53, "UDP", "dns"), (5353, "UDP", None)]
CENTAUR_PORTS = [
    (HOST_PORTS[0], "TCP", f"web-{HOST_PORTS[0]}"),
    (HOST_PORTS[1], "TCP", f"web-{HOST_PORTS[1]}"),
    (HOST_PORTS[2], "UDP", f"dns-{HOST_PORTS[2]}"),
    (HOST_PORTS[4], "UDP", f"dns-{HOST_PORTS[4]}"),
]
NODE_IPS = {1: "172.18.0.2", 2: "172.18.0.3"}


def pod_ip(node, index):
    return f"10.244.{node}.{10 + index}"


def build_pods(with_centaurs):
    pods = []
    for i, (house, name) in enumerate(HOUSES.items()):
        for replica in (0, 1):
            node = replica + 1
            pods.append({
                "id": f"{NS_PREFIX}{house}/{name}-{replica}",
                "ns": NS_PREFIX + house, "name": f"{name}-{replica}",
                "labels": {"conformance-house": house}, "node": node,
                "ip": pod_ip(node, i), "host": False, "ports": POD_PORTS,
            })
    if with_centaurs:
        for replica in (0, 1):
            node = replica + 1
            pods.append({
                "id": f"{NS_PREFIX}forbidden-forrest/centaur-{replica}",
                "ns": NS_PREFIX + "forbidden-forrest", "name": f"centaur-{replica}",
                "labels": {"conformance-house": "forbidden-forrest"}, "node": node,
                "ip": NODE_IPS[node], "host": True, "ports": CENTAUR_PORTS,
            })
    return pods


def namespaces(with_centaurs):
    houses = list(HOUSES) + (["forbidden-forrest"] if with_centaurs else [])
    return {NS_PREFIX + h: {"conformance-house": h} for h in houses}


NODES = {f"node-{k}": {"labels": {"kubernetes.io/hostname": f"node-{k}"}, "ips": [ip]}
         for k, ip in NODE_IPS.items()}


# ---- selectors and the evaluation order of the spec ----------------------------------------

def selects(selector, labels):
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def ns_labels(world, pod):
    labels = dict(world["namespaces"][pod["ns"]])
    labels["kubernetes.io/metadata.name"] = pod["ns"]
    return labels


def subject_selects(world, cnp, pod):
    if pod["host"]:
        return False  # host-network pods are never subjects
    subject = cnp["spec"]["subject"]
    if "namespaces" in subject:
        return selects(subject["namespaces"], ns_labels(world, pod))
    sel = subject["pods"]
    return (selects(sel.get("namespaceSelector"), ns_labels(world, pod))
            and selects(sel.get("podSelector"), pod["labels"]))


def peer_matches(world, peer, other):
    if "namespaces" in peer:
        return not other["host"] and selects(peer["namespaces"], ns_labels(world, other))
    if "pods" in peer:
        sel = peer["pods"]
        return (not other["host"]
                and selects(sel.get("namespaceSelector"), ns_labels(world, other))
                and selects(sel.get("podSelector"), other["labels"]))
    if "networks" in peer:
        ip = ipaddress.ip_address(other["ip"])
        return any(ip.version == ipaddress.ip_network(c, strict=False).version
                   and ip in ipaddress.ip_network(c, strict=False) for c in peer["networks"])
    if "nodes" in peer:
        return any(other["ip"] in node["ips"] for node in world["nodes"].values()
                   if selects(peer["nodes"], node["labels"]))
    raise ValueError(f"peer kind not used by the suite: {peer}")


def protocols_match(protocols, dst, port, proto):
    if not protocols:
        return True
    for entry in protocols:
        if "destinationNamedPort" in entry:
            if any(n == entry["destinationNamedPort"] and p == port and pr == proto
                   for p, pr, n in dst["ports"]):
                return True
            continue
        (kind, body), = entry.items()
        if kind.upper() != proto:
            continue
        dp = body["destinationPort"]
        if "number" in dp and dp["number"] == port:
            return True
        if "range" in dp and dp["range"]["start"] <= port <= dp["range"]["end"]:
            return True
    return False


def tier(world, name, pod, direction, other, dst, port, proto):
    """First matching rule of the tier: (action, 'cnp/NAME rule I "name"') or None."""
    cnps = [c for c in world["cnps"] if c["spec"]["tier"] == name
            and subject_selects(world, c, pod) and c["spec"].get(direction)]
    cnps.sort(key=lambda c: (c["spec"]["priority"], c["metadata"]["name"]))
    key = "from" if direction == "ingress" else "to"
    for cnp in cnps:
        for i, rule in enumerate(cnp["spec"][direction]):
            if (any(peer_matches(world, p, other) for p in rule[key])
                    and protocols_match(rule.get("protocols"), dst, port, proto)):
                return rule["action"], f'{name} cnp/{cnp["metadata"]["name"]} rule {i} "{rule.get("name", "")}"'
    return None


def netpol(world, pod, direction, other):
    """None when no NetworkPolicy isolates `pod` in `direction`, else (allowed, reason)."""
    isolating = [np for np in world["netpols"] if np["metadata"]["namespace"] == pod["ns"]
                 and selects(np["spec"].get("podSelector") or {}, pod["labels"])
                 and direction.capitalize() in np["spec"]["policyTypes"]]
    if not isolating or pod["host"]:
        return None
    key = "from" if direction == "ingress" else "to"
    for np in isolating:
        for rule in np["spec"].get(direction) or []:
            assert "ports" not in rule, "the suite's NetworkPolicy has no ports"
            for peer in rule[key]:
                assert set(peer) <= {"namespaceSelector", "podSelector"}
                if other["host"]:
                    continue
                ns_ok = ("namespaceSelector" not in peer
                         and other["ns"] == pod["ns"]) or selects(
                             peer.get("namespaceSelector"), ns_labels(world, other))
                pod_ok = "podSelector" not in peer or selects(peer["podSelector"], other["labels"])
                if ns_ok and pod_ok:
                    return True, f'NetworkPolicy {np["metadata"]["namespace"]}/{np["metadata"]["name"]} allows'
    return False, "NetworkPolicy isolates it and allows nothing matching"


def direction_verdict(world, pod, direction, other, dst, port, proto):
    """(allowed, reason) for one direction of one end."""
    if pod["host"]:
        return True, "host-network end: not a subject"
    admin = tier(world, "Admin", pod, direction, other, dst, port, proto)
    passed = ""
    if admin and admin[0] != "Pass":
        return admin[0] == "Accept", f"{admin[1]} {admin[0]}"
    if admin:
        passed = f"{admin[1]} Pass -> "
    np = netpol(world, pod, direction, other)
    if np and direction == "egress" and other["host"] and other["node"] == pod["node"]:
        # NetworkPolicy never isolates a pod from its own node: final, allowed.
        return True, passed + np[1].split(":")[0] + ": to its own node, always allowed"
    if np:
        return np[0], passed + np[1]
    base = tier(world, "Baseline", pod, direction, other, dst, port, proto)
    if base and base[0] != "Pass":
        return base[0] == "Accept", passed + f"{base[1]} {base[0]}"
    return True, passed + ("default allow" if not base else f"{base[1]} Pass -> default allow")


def decide(world, src, dst, port, proto):
    """(connected, reason): egress at the source AND ingress at the destination."""
    if src["id"] == dst["id"]:
        return True, "hairpin"
    eg = direction_verdict(world, src, "egress", dst, dst, port, proto)
    ing = direction_verdict(world, dst, "ingress", src, dst, port, proto)
    connected = eg[0] and ing[0]
    parts = []
    if eg[1] not in ("default allow", "host-network end: not a subject"):
        parts.append(f"egress: {eg[1]}")
    if ing[1] not in ("default allow", "host-network end: not a subject"):
        parts.append(f"ingress: {ing[1]}")
    return connected, "; ".join(parts) or "no rule selects either end"


# ---- upstream assertions --------------------------------------------------------------------

GETPOD = re.compile(r'(\w+)\s*:?=\s*kubernetes\.GetPod\(t, s\.Client, "([^"]+)", "([^"]+)"')
POKE = re.compile(r'kubernetes\.PokeServer\(t, s\.ClientSet, &s\.KubeConfig, "([^"]+)", "([^"]+)", '
                  r'"(\w+)",\s*(\w+)\.Status\.PodIP, int32\(([^)]+)\), s\.TimeoutConfig, (true|false)\)')
MUTATION = re.compile(r'PatchClusterNetworkPolicy|PatchNamespace|s\.Client\.Delete\(')
RUN = re.compile(r't\.Run\("([^"]+)"')


def upstream_events(go_source):
    """[(state index, subtest, client id, server id, proto, port, expected)] in source order;
    the state index counts the Patch/Delete calls before the assertion."""
    events = []
    state, servers, subtest = 0, {}, None
    tokens = sorted([(m.start(), "get", m) for m in GETPOD.finditer(go_source)]
                    + [(m.start(), "poke", m) for m in POKE.finditer(go_source)]
                    + [(m.start(), "mut", m) for m in MUTATION.finditer(go_source)]
                    + [(m.start(), "run", m) for m in RUN.finditer(go_source)],
                    key=lambda t: t[0])
    for _, kind, m in tokens:
        if kind == "run":
            subtest = m.group(1)
        elif kind == "get":
            servers[m.group(1)] = f"{m.group(2)}/{m.group(3)}"
        elif kind == "mut":
            state += 1
        else:
            port_text = m.group(5)
            hp = re.fullmatch(r"s\.HostNetworkPorts\[(\d)\]", port_text)
            port = HOST_PORTS[int(hp.group(1))] if hp else int(port_text)
            events.append((state, subtest, f"{m.group(1)}/{m.group(2)}", servers[m.group(4)],
                           m.group(3).upper(), port, m.group(6) == "true"))
    return events


# ---- the tests ------------------------------------------------------------------------------

def load(upstream, rel):
    text = open(os.path.join(upstream, "conformance", rel)).read()
    for i, p in enumerate(HOST_PORTS):
        text = text.replace("{{ index .HostNetworkPorts %d }}" % i, str(p))
    return [d for d in yaml.safe_load_all(text) if d]


def swap(direction, a, b):
    def apply(world):
        rules = world["cnp"]["spec"][direction]
        rules[a], rules[b] = rules[b], rules[a]
        return f"spec.{direction}[{a}] and [{b}] of cnp/{world['cnp']['metadata']['name']} swapped"
    return apply


def swap_both(a, b):
    def apply(world):
        swap("egress", a, b)(world)
        swap("ingress", a, b)(world)
        return f"spec.egress[{a}]/[{b}] and spec.ingress[{a}]/[{b}] of cnp/{world['cnp']['metadata']['name']} swapped"
    return apply


def named_port(direction, index, name):
    def apply(world):
        world["cnp"]["spec"][direction][index]["protocols"] = [{"destinationNamedPort": name}]
        return f"spec.{direction}[{index}].protocols of cnp/{world['cnp']['metadata']['name']} replaced by destinationNamedPort {name}"
    return apply


def set_action(cnp_name, direction, index, action):
    def apply(world):
        cnp = next(c for c in world["cnps"] if c["metadata"]["name"] == cnp_name)
        cnp["spec"][direction][index]["action"] = action
        return f"cnp/{cnp_name} spec.{direction}[{index}].action set to {action}"
    return apply


def set_priority(cnp_name, priority):
    def apply(world):
        cnp = next(c for c in world["cnps"] if c["metadata"]["name"] == cnp_name)
        cnp["spec"]["priority"] = priority
        return f"cnp/{cnp_name} spec.priority set to {priority}"
    return apply


def relabel(house, value):
    def apply(world):
        world["namespaces"][NS_PREFIX + house] = {"conformance-house": value}
        return f"namespace {NS_PREFIX}{house} relabelled conformance-house={value}"
    return apply


def delete_netpol(name):
    def apply(world):
        world["netpols"] = [n for n in world["netpols"] if n["metadata"]["name"] != name]
        return f"NetworkPolicy {name} deleted"
    return apply


def insert_cidr_rule(world):
    pods = {p["id"]: p for p in world["pods"]}
    ips = [pods[f"{NS_PREFIX}ravenclaw/luna-lovegood-0"]["ip"] + "/32",
           pods[f"{NS_PREFIX}hufflepuff/cedric-diggory-0"]["ip"] + "/32"]
    world["cnp"]["spec"]["egress"].insert(0, {
        "name": "allow-egress-to-specific-podIPs", "action": "Accept",
        "to": [{"networks": ips}]})
    return f"rule allow-egress-to-specific-podIPs (Accept to networks {', '.join(ips)}) inserted at spec.egress[0]"


def every_node(world):
    """The lab's Nodes carry kubernetes.io/hostname only: `kubernetes.io/os: linux` (every
    node of a Kind cluster) becomes `kubernetes.io/hostname Exists` (every lab node)."""
    for cnp in world["cnps"]:
        for rule in cnp["spec"].get("egress", []):
            for peer in rule["to"]:
                if "nodes" in peer:
                    assert peer["nodes"] == {"matchLabels": {"kubernetes.io/os": "linux"}}
                    peer["nodes"] = {"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "Exists"}]}


# (tier, slug, go file, fixture, [mutation per Patch/Delete in source order], centaurs, notes)
def tests():
    a, b = "admin-network-policy-", "baseline-admin-network-policy-"
    swaps4 = lambda d: [swap(d, 0, 1), swap(d, 0, 2), swap(d, 3, 4)]
    swaps2 = lambda d: [swap(d, 0, 1)]
    sctp = ("SCTP-adapted: the lab has no SCTP sockets, so SCTP is not probed; the SCTP "
            "port rules stay in the policy (compiled and loaded) and match none of the TCP/UDP "
            "probes, while the port-less rules match every protocol.")
    t = []
    for tier_name, prefix, dir_ in (("admin", a, "admin_tier"), ("baseline", b, "baseline_tier")):
        sw = swaps4 if tier_name == "admin" else swaps2
        for d in ("egress", "ingress"):
            for proto in ("tcp", "udp", "sctp"):
                t.append((tier_name, f"{d}-{proto}", f"{prefix}standard-{d}-{proto}-rules.go",
                          f"base/{dir_}/standard-{d}-{proto}-rules.yaml", sw(d), False,
                          sctp if proto == "sctp" else ""))
        gress = [swap_both(0, 1), swap_both(0, 2), swap_both(3, 4)] if tier_name == "admin" else [swap_both(0, 1)]
        t.append((tier_name, "gress", f"{prefix}standard-gress-rules.go",
                  f"base/{dir_}/standard-gress-rules-combined.yaml", gress, False, ""))
        t.append((tier_name, "egress-inline-cidr", f"{prefix}standard-egress-inline-cidr-rules.go",
                  f"base/{dir_}/standard-egress-inline-cidr-rules.yaml",
                  [relabel("slytherin", "denied-namespace-label"), relabel("slytherin", "slytherin"),
                   insert_cidr_rule], False, ""))
    t.append(("admin", "priority", a + "standard-priority.go", "base/admin_tier/standard-priority-field.yaml",
              [set_priority("old-priority-60-new-priority-40-example", 40)], False, ""))
    t.append(("admin", "integration", a + "standard-integration.go",
              "base/api_integration/standard-anp-np-banp.yaml",
              [set_action("pass-example", "ingress", 0, "Pass"), set_action("pass-example", "egress", 0, "Pass"),
               delete_netpol("allow-gress-from-to-slytherin-to-gryffindor")], False, ""))
    t.append(("admin", "egress-named-port", a + "experimental-egress-rules.go#CNPAdminTierEgressNamedPort",
              "base/admin_tier/standard-egress-tcp-rules.yaml", [named_port("egress", 5, "web")], False, ""))
    t.append(("admin", "ingress-named-port", a + "experimental-ingress-rules.go",
              "base/admin_tier/standard-ingress-udp-rules.yaml", [named_port("ingress", 5, "dns")], False, ""))
    t.append(("baseline", "egress-named-port", b + "experimental-egress-rules.go#CNPBaselineTierEgressNamedPort",
              "base/baseline_tier/standard-egress-udp-rules.yaml", [named_port("egress", 3, "dns")], False, ""))
    t.append(("baseline", "ingress-named-port", b + "experimental-ingress-rules.go",
              "base/baseline_tier/standard-ingress-tcp-rules.yaml", [named_port("ingress", 3, "web")], False, ""))
    node_note = ("Adapted: the nodes selector kubernetes.io/os=linux (every Kind node) is written "
                 "kubernetes.io/hostname Exists (every lab node: lab Nodes carry only that label). "
                 "A pod reaching the host-network centaur on its OWN node enters that node's input "
                 "hook, which nftpol does not judge yet: those probes are not in the expectation "
                 "(upstream probes harry-potter-1 -> centaur-1, own-node in this layout; the "
                 "other-node pairs carry the same reasoning).")
    t.append(("admin", "egress-node-peers", a + "experimental-egress-rules.go#CNPAdminTierEgressNodePeers",
              "base/admin_tier/experimental-egress-selector-rules.yaml", [], True, node_note))
    t.append(("baseline", "egress-node-peers", b + "experimental-egress-rules.go#CNPBaselineTierEgressNodePeers",
              "base/baseline_tier/experimental-egress-selector-rules.yaml", [], True, node_note))
    return t


def go_test_source(upstream, ref):
    path, _, name = ref.partition("#")
    text = open(os.path.join(upstream, "conformance", "tests", path)).read()
    if name:
        start = text.index(f"var {name} = suite.ConformanceTest{{")
        end = text.find("\nvar ", start + 1)
        text = text[start:end if end != -1 else len(text)]
    short = re.search(r'ShortName:\s*"(\w+)"', text).group(1)
    return text, short


# ---- output ---------------------------------------------------------------------------------

def pod_doc(pod):
    doc = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": pod["name"], "namespace": pod["ns"], "labels": pod["labels"]},
           "spec": {"nodeName": f"node-{pod['node']}", "containers": [{
               "name": "server", "image": "registry.k8s.io/e2e-test-images/agnhost:2.45",
               "ports": [dict({"containerPort": p, "protocol": pr}, **({"name": n} if n else {}))
                         for p, pr, n in pod["ports"]]}]}}
    if pod["host"]:
        doc["spec"]["hostNetwork"] = True
    else:
        doc["status"] = {"podIP": pod["ip"], "podIPs": [{"ip": pod["ip"]}]}
    return doc


def render(docs):
    return "---\n" + "---\n".join(yaml.safe_dump(d, sort_keys=False, default_flow_style=False) for d in docs)


def short_id(pod_id):
    return pod_id.removeprefix(NS_PREFIX)


def wrap(text, width=96):
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width - 2:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        out.append(line)
    return ["# " + l for l in out]


def policy_summary(world):
    lines = []
    for cnp in world["cnps"]:
        s = cnp["spec"]
        lines.append(f"CNP {cnp['metadata']['name']} ({s['tier']}, priority {s['priority']}):")
        for d in ("ingress", "egress"):
            for i, r in enumerate(s.get(d) or []):
                peers = json.dumps(r["from" if d == "ingress" else "to"], separators=(",", ":"))
                protos = json.dumps(r.get("protocols"), separators=(",", ":")) if r.get("protocols") else "all traffic"
                lines.append(f"  {d}[{i}] {r.get('name', '')!r} {r['action']} peers {peers} protocols {protos}")
    for np in world["netpols"]:
        lines.append(f"NetworkPolicy {np['metadata']['namespace']}/{np['metadata']['name']}: "
                     + json.dumps(np["spec"], separators=(",", ":")))
    return lines


def main(upstream, out_dir):
    written = []
    for tier_name, slug, go_ref, fixture, mutations, centaurs, note in tests():
        go, short = go_test_source(upstream, go_ref)
        events = upstream_events(go)
        n_mut = len(MUTATION.findall(go))
        assert n_mut == len(mutations), f"{short}: {n_mut} mutations upstream, {len(mutations)} here"
        docs = load(upstream, fixture)
        world = {"cnps": [d for d in docs if d["kind"] == "ClusterNetworkPolicy"],
                 "netpols": [d for d in docs if d["kind"] == "NetworkPolicy"],
                 "namespaces": namespaces(centaurs), "nodes": NODES, "pods": build_pods(centaurs)}
        every_node(world)
        world["cnp"] = world["cnps"][0]
        states, history = [], []
        for index in range(len(mutations) + 1):
            if index:
                history.append(mutations[index - 1](world))
            snapshot = copy.deepcopy({k: world[k] for k in ("cnps", "netpols", "namespaces")})
            states.append((index, list(history), snapshot))
        seen = {}
        for index, hist, snap in states:
            w = dict(world, **snap)
            asserts = [e for e in events if e[0] == index]
            subs = list(dict.fromkeys(e[1] for e in asserts))
            pods = {p["id"]: p for p in w["pods"]}
            judged = {}
            for src in w["pods"]:
                for dst in w["pods"]:
                    for port, proto, _ in dst["ports"]:
                        judged[(src["id"], dst["id"], port, proto)] = decide(w, src, dst, port, proto)
            checked = {"checked": 0, "sctp": 0, "own-node": 0}
            for _, sub, client, server, proto, port, want in asserts:
                if proto == "SCTP":
                    checked["sctp"] += 1
                    continue
                key = (client, server, port, proto)
                if key not in judged:
                    assert pods[server]["host"] and pods[client]["node"] == pods[server]["node"], key
                    checked["own-node"] += 1
                    continue
                got = judged[key][0]
                assert got == want, f"{short} state {index} {sub}: {key} upstream {want}, spec {got} ({judged[key][1]})"
                checked["checked"] += 1
            if not asserts:
                continue  # a state no assertion validates
            fingerprint = json.dumps(snap, sort_keys=True)
            if fingerprint in seen:
                seen[fingerprint][1].extend(subs)
                continue
            name = f"cnp-conformance-{tier_name}-{slug}-{len([s for s in seen.values() if s[2] == slug]) + 1}"
            seen[fingerprint] = (name, subs, slug, hist, w, judged, checked)
        for name, subs, _, hist, w, judged, checked in seen.values():
            write_scenario(out_dir, name, short, go_ref, subs, hist, w, judged, checked, note, centaurs)
            written.append(name)
    print("\n".join(written))


def write_scenario(out_dir, name, short, go_ref, subs, hist, w, judged, checked, note, centaurs):
    pods = {p["id"]: p for p in w["pods"]}
    head = []
    head += wrap(f"Proves: upstream conformance test {short} "
                 f"({UPSTREAM_REF} conformance/tests/{go_ref.split('#')[0]}), the policy state "
                 f"validated by subtest(s): " + "; ".join(f'"{s}"' for s in subs) + ".")
    head += wrap("State: the fixture " + ("as applied" if not hist else "after " + "; then ".join(hist)) + ".")
    if note:
        head += wrap(note)
    head += ["# Policies in this state:"] + ["#   " + l for l in policy_summary(w)]
    for house, labels in sorted(w["namespaces"].items()):
        if labels["conformance-house"] != house.removeprefix(NS_PREFIX):
            head.append(f"# Namespace {house} is labelled conformance-house={labels['conformance-house']}.")
    head += wrap(f"Upstream asserts, in this state: {checked['checked']} TCP/UDP probes, each equal to "
                 f"the expectation below (checked when generated); {checked['sctp']} SCTP probes and "
                 f"{checked['own-node']} probes of a host-network server on the client's own node, "
                 "not probed here.")
    head.append("# Expected (source house -> destination house, ports, verdict, deciding rules):")
    head += ["#   " + l for l in reasoning_lines(w, judged, pods)]
    head.append("#   every other pair and port: connected (no rule selects either end, or hairpin).")
    head += wrap("Layout (upstream conformance fixtures): namespaces network-policy-conformance-"
                 "{gryffindor,slytherin,hufflepuff,ravenclaw} labelled conformance-house=<house>; pods "
                 "harry-potter, draco-malfoy, cedric-diggory, luna-lovegood (label conformance-house="
                 "<house>), -0 on node-1 and -1 on node-2, serving 80/TCP (web), 8080/TCP, 53/UDP (dns), "
                 "5353/UDP" + ("; host-network centaur-0/-1 in network-policy-conformance-forbidden-forrest "
                               f"on node-1/node-2 serving {HOST_PORTS[0]}/TCP, {HOST_PORTS[1]}/TCP, "
                               f"{HOST_PORTS[2]}/UDP, {HOST_PORTS[4]}/UDP" if centaurs else "") + ".")
    head += wrap("Global rules applied to every row: a pod reaching itself is always connected; a "
                 "connection needs the source's egress AND the destination's ingress to allow it; each "
                 "direction runs Admin CNPs (priority order, first matching rule), then NetworkPolicy "
                 "(final when it isolates the pod in that direction), then Baseline CNPs, then allowed.")
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
            for ns, labels in w["namespaces"].items()]
    docs += [pod_doc(p) for p in w["pods"]]
    docs += w["netpols"] + w["cnps"]
    with open(os.path.join(out_dir, name + ".yaml"), "w") as f:
        f.write("\n".join(head) + "\n" + render(docs))
    probes = [{"from": s, "to": d, "port": port, "protocol": proto, "connected": c}
              for (s, d, port, proto), (c, _) in sorted(judged.items())]
    with open(os.path.join(out_dir, name + ".expected.json"), "w") as f:
        f.write('{"probes": [\n' + ",\n".join("  " + json.dumps(p) for p in probes) + "\n]}\n")


def reasoning_lines(w, judged, pods):
    groups = {}
    for (s, d, port, proto), (connected, reason) in judged.items():
        if reason in ("hairpin", "no rule selects either end"):
            continue
        src, dst = pods[s], pods[d]
        key = (src["ns"].removeprefix(NS_PREFIX), dst["ns"].removeprefix(NS_PREFIX))
        groups.setdefault(key, {}).setdefault((connected, reason), {}).setdefault(
            f"{port}/{proto}", set()).add((src["name"], dst["name"]))
    lines = []
    for (s, d), outcomes in sorted(groups.items()):
        all_pairs = set()
        for ports in outcomes.values():
            for pairs in ports.values():
                all_pairs |= pairs
        for (connected, reason), ports in sorted(outcomes.items(), key=lambda x: x[0][1]):
            by_pairs = {}
            for port, pairs in ports.items():
                by_pairs.setdefault(frozenset(pairs), []).append(port)
            for pairs, plist in by_pairs.items():
                who = f"{s} -> {d}"
                if pairs != all_pairs:
                    who += " [" + ", ".join(sorted(f"{a}->{b}" for a, b in pairs)) + "]"
                verdict = "connected" if connected else "denied"
                lines.append(f"{who} {', '.join(sorted(plist, key=lambda p: (p.split('/')[1], int(p.split('/')[0]))))}: {verdict} by {reason}")
    return lines


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

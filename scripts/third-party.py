#!/usr/bin/env python3
"""The parts of scripts/third-party that read and write files; the script runs cargo and valgrind.

  prepare SRC DEST LEAKCHECK_DIR plain|checked   copy a package, detach it, and for `checked`
                                                  install leakcheck and annotate every test
  libtest LOG META OUT                            the failures of a `cargo test` log, as JSON
  junit XML META OUT                              the failures of a nextest JUnit file, as JSON
  flagged RESULTS_DIR                             the tests leakcheck reported, one
                                                  `target<TAB>name` a line
  summary OUT_DIR MANIFEST                        the markdown summary of every crate of
                                                  MANIFEST that has results

META is `cargo metadata --no-deps` of the copy: it maps runners' binary names to test targets.
A test is named by its target's source path and its libtest name (`tests/quick.rs
contains`), the same under both runners.
"""

import json
import os
import re
import shutil
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

ATTRIBUTE = "#[leakcheck::leakcheck]"
# In the library's own files: leakcheck is a dev-dependency, absent from the library's normal
# build, where a `#[test]` outside a `#[cfg(test)]` module is still parsed (and then dropped).
LIB_ATTRIBUTE = "#[cfg_attr(test, leakcheck::leakcheck)]"
ALLOCATOR = "static LEAKCHECK_ALLOC: leakcheck::LeakCheck = leakcheck::LeakCheck::system();"

# `#[test]`, `#[tokio::test]`, `#[async_std::test(...)]` at the start of a line (not in a
# comment or a doc example, which start with `//`).
TEST_LINE = re.compile(r"^(\s*)(#\[(?:\w+::)*test(?:\(.*\))?\])")
# `quickcheck! {` or `quickcheck::quickcheck! {`: the functions inside become tests.
QUICKCHECK_BLOCK = re.compile(r"^\s*(?:\w+::)*quickcheck!\s*\{")
FN_LINE = re.compile(r"^(\s*)((?:pub(?:\([^)]*\))?\s+)?fn\s)")
# Test forms the attribute cannot go on, counted as unchecked.
UNCHECKED_FORMS = {
    "#[quickcheck]": re.compile(r"^\s*#\[(?:\w+::)*quickcheck\]"),
    "#[cfg_attr(..., test)]": re.compile(r"^\s*#\[cfg_attr\(.*,\s*test\s*\)\]"),
    # Runs the body up to N times itself; not a form the attribute knows.
    "#[flaky_test]": re.compile(r"^\s*#\[(?:\w+::)*flaky_test\]"),
}


def fail(message):
    print(f"scripts/third-party: {message}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# prepare


def detach(manifest, extra):
    """Appends `[workspace]` (the copy lives inside this repository's workspace directory) and
    `extra` to the package's Cargo.toml, and checks that the result still parses."""
    text = manifest.read_text()
    data = tomllib.loads(text)
    if "workspace" in data:
        fail(f"{manifest} already has a [workspace] table")
    text = text.rstrip("\n") + "\n\n# Added by scripts/third-party.\n[workspace]\n" + extra
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        fail(f"{manifest}: the added tables do not fit the package's manifest: {error}")
    manifest.write_text(text)
    return data


def advice(data, leakcheck):
    """The README's Setup: leakcheck as a dev-dependency, it and gimli optimised in the dev
    profile (only where the package does not set them itself)."""
    lines = ["", "[dev-dependencies.leakcheck]", f'path = "{leakcheck}"']
    dev_packages = data.get("profile", {}).get("dev", {}).get("package", {})
    for package in ("leakcheck", "gimli"):
        if package not in dev_packages:
            lines += ["", f"[profile.dev.package.{package}]", "opt-level = 3"]
    return "\n".join(lines) + "\n"


def release_debug(manifest):
    """File:line in release reports needs line tables (the crate docs' Limitations): add them to
    `[profile.release]` unless the package sets `debug` there already."""
    text = manifest.read_text()
    release = tomllib.loads(text).get("profile", {}).get("release")
    if release is None:
        text += '\n[profile.release]\ndebug = "line-tables-only"\n'
    elif "debug" not in release:
        text = re.sub(
            r"^\[profile\.release\]\s*$",
            '[profile.release]\ndebug = "line-tables-only"',
            text,
            count=1,
            flags=re.M,
        )
    manifest.write_text(text)


def test_roots(dest, data):
    """(path, is_lib) of every libtest test target: the library and each `[[test]]` (or
    tests/*.rs when the manifest leaves them to cargo's discovery)."""
    roots = []
    lib = data.get("lib", {})
    lib_path = dest / lib.get("path", "src/lib.rs")
    if lib_path.exists() and lib.get("test", True) and lib.get("harness", True):
        roots.append((lib_path, True))
    tests = data.get("test")
    if tests is None:
        tests = [{"path": str(p.relative_to(dest))} for p in sorted(dest.glob("tests/*.rs"))]
        tests += [
            {"path": str(p.relative_to(dest))} for p in sorted(dest.glob("tests/*/main.rs"))
        ]
    for test in tests:
        if test.get("harness", True):
            roots.append((dest / test["path"], False))
    return roots


def annotate_file(path, attribute):
    """Puts `attribute` on every test in `path`, on the test attribute's own line so that every
    line keeps its number (reports' file:line stay the package's).

    Before the test attribute, not after it: below `#[leakcheck]` the attribute sees the
    `#[test]`; above it, it has to find the `#[test]` in the source text, which fails when the
    test comes out of another crate's macro (`proptest!`): the test is then registered twice."""
    counts = {"attribute": 0, "quickcheck!": 0}
    unchecked = {}
    out = []
    depth = None  # brace depth inside a `quickcheck! {` block
    test_above = False  # a test attribute was annotated since the last `fn`
    for line in path.read_text().split("\n"):
        m = TEST_LINE.match(line)
        if m:
            line = f"{m.group(1)}{attribute} {line[len(m.group(1)):]}"
            counts["attribute"] += 1
            test_above = True
        elif FN_LINE.match(line):
            # A `quickcheck! { fn ... }` function, unless a macro of the crate's own wrote the
            # `#[test]` above it (indexmap's `quickcheck_limit!`).
            if depth == 1 and not test_above:
                m = FN_LINE.match(line)
                line = f"{m.group(1)}{attribute} {line[len(m.group(1)):]}"
                counts["quickcheck!"] += 1
            test_above = False
        else:
            for form, pattern in UNCHECKED_FORMS.items():
                if pattern.match(line):
                    unchecked[form] = unchecked.get(form, 0) + 1
        if depth is None and QUICKCHECK_BLOCK.match(line):
            depth = 0
        if depth is not None:
            depth += line.count("{") - line.count("}")
            if depth <= 0:
                depth = None
        out.append(line)
    path.write_text("\n".join(out))
    return counts, unchecked


def prepare(src, dest, leakcheck, kind):
    src, dest = Path(src), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, symlinks=True)
    manifest = dest / "Cargo.toml"
    data = tomllib.loads(manifest.read_text())
    detach(manifest, advice(data, leakcheck) if kind == "checked" else "")
    release_debug(manifest)
    if kind == "plain":
        return

    edition = data.get("package", {}).get("edition", "2015")
    record = {"files": {}, "unchecked": {}, "own_allocator": []}
    own_allocator = set()
    for path, is_lib in test_roots(dest, data):
        rel = str(path.relative_to(dest))
        if "#[global_allocator]" in path.read_text():
            # A suite that counts allocations with its own allocator cannot have ours.
            own_allocator.add(path)
            record["own_allocator"].append(rel)
            continue
        lines = ["", "// Added by scripts/third-party: leakcheck's allocator for these tests."]
        if is_lib:
            if edition == "2015":
                lines += ["#[cfg(test)]", "extern crate leakcheck;"]
            lines.append("#[cfg(test)]")
        lines += ["#[global_allocator]", ALLOCATOR, ""]
        with path.open("a") as f:
            f.write("\n".join(lines))
    files = [(p, LIB_ATTRIBUTE) for p in sorted(dest.glob("src/**/*.rs"))]
    files += [(p, ATTRIBUTE) for p in sorted(dest.glob("tests/**/*.rs"))]
    for path, attribute in files:
        if path in own_allocator:
            continue
        counts, unchecked = annotate_file(path, attribute)
        if any(counts.values()):
            record["files"][str(path.relative_to(dest))] = counts
        for form, n in unchecked.items():
            record["unchecked"][form] = record["unchecked"].get(form, 0) + n
    (dest / "leakcheck-annotations.json").write_text(json.dumps(record, indent=1))


# ---------------------------------------------------------------------------------------------
# reading the runners' output

HEADLINE = re.compile(r"leakcheck: memory leak in test `[^`]*`")
SUMMARY = re.compile(r"SUMMARY: leakcheck: ([\d,]+) bytes leaked in ([\d,]+) allocation")


def targets(meta_path):
    """runner binary name -> source path relative to the package: libtest's `Running` line
    shows the source path, nextest's binary id is `pkg` (library) or `pkg::target`."""
    meta = json.load(open(meta_path))
    package = meta["packages"][0]
    root = Path(package["manifest_path"]).parent
    ids = {}
    for target in package["targets"]:
        rel = str(Path(target["src_path"]).relative_to(root))
        kinds = target["kind"]
        if "test" in kinds:
            ids[f"{package['name']}::{target['name']}"] = rel
        elif "bin" in kinds:
            ids[f"{package['name']}::bin/{target['name']}"] = rel
        elif any(k in kinds for k in ("lib", "rlib", "dylib", "proc-macro", "cdylib")):
            ids[package["name"]] = rel
    return ids


def classify(text):
    """What a failing test's output says: a leak report, another leakcheck failure, or the
    test's own failure."""
    if HEADLINE.search(text):
        failure = {"kind": "leak", "bytes": 0, "allocs": 0, "site": first_site(text)}
        m = SUMMARY.search(text)
        if m:
            failure["bytes"] = int(m.group(1).replace(",", ""))
            failure["allocs"] = int(m.group(2).replace(",", ""))
        return failure
    if "leakcheck: " in text:
        line = next(l for l in text.splitlines() if "leakcheck: " in l)
        return {"kind": "leakcheck", "message": line.strip()[:300]}
    panic = re.search(r"panicked at ([^\n]*)\n([^\n]*)", text)
    return {"kind": "other", "message": (panic.group(0) if panic else text.strip()[-300:])[:300]}


def first_site(text):
    """The first frame of the largest group that is not inside `alloc`'s or `core`'s plumbing
    (function and file:line): the line that allocated, or std's function that did."""
    m = re.search(r"allocated at:\n((?:\s+\d+: [^\n]*\n(?:\s+at [^\n]*\n)?)+)", text)
    if not m:
        return None
    frames = re.findall(r"\s+\d+: ([^\n]*)\n(?:\s+at ([^\n]*)\n)?", m.group(1))
    plumbing = re.compile(r"^<?(?:alloc|core)::")
    function, location = next((f for f in frames if not plumbing.match(f[0])), frames[0])
    location = re.sub(r"^.*/registry/src/[^/]+/", "", location.strip())
    location = re.sub(r"^/rustc/[0-9a-f]+/", "", location)
    return f"{function.strip()} at {location}" if location else function.strip()


def libtest(log_path, meta_path, out_path):
    """Failures of one `cargo test --tests --no-fail-fast` log. A binary whose run never
    printed `test result:` (crashed, killed by the timeout) is listed under `incomplete`."""
    ids = targets(meta_path)
    by_path = {v: v for v in ids.values()}
    result = {"run": 0, "ignored": 0, "failures": {}, "incomplete": []}
    binary = None
    finished = True
    section = None
    sections = {}
    for line in open(log_path, errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"^\s+Running (?:unittests )?(\S+) \(", line)
        if m:
            if binary and not finished:
                result["incomplete"].append(binary)
            binary = by_path.get(m.group(1), m.group(1))
            finished = False
            section = None
            continue
        m = re.match(r"^test (.+?) \.\.\. (ok|FAILED|ignored)", line)
        if m and binary:
            if m.group(2) == "ignored":
                result["ignored"] += 1
            else:
                result["run"] += 1
            if m.group(2) == "FAILED":
                sections.setdefault((binary, m.group(1)), "")
            continue
        m = re.match(r"^---- (.+) stdout ----$", line)
        if m and binary:
            section = (binary, m.group(1))
            sections[section] = ""
            continue
        if line.startswith("test result:"):
            finished = True
            section = None
            continue
        if line == "failures:":
            section = None
            continue
        if section:
            sections[section] += line + "\n"
    if binary and not finished:
        result["incomplete"].append(binary)
    for (binary, name), text in sections.items():
        result["failures"][f"{binary}\t{name}"] = classify(text)
    json.dump(result, open(out_path, "w"), indent=1)


def junit(xml_path, meta_path, out_path):
    ids = targets(meta_path)
    result = {"run": 0, "ignored": 0, "failures": {}, "incomplete": []}
    if not os.path.exists(xml_path):
        result["incomplete"].append("(no JUnit file: nextest did not finish)")
        json.dump(result, open(out_path, "w"), indent=1)
        return
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        binary = ids.get(case.get("classname"), case.get("classname"))
        if case.find("skipped") is not None:
            result["ignored"] += 1
            continue
        result["run"] += 1
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is None:
            continue
        text = "\n".join(
            (e.text or "") for e in [bad, case.find("system-out"), case.find("system-err")]
            if e is not None
        )
        failure = classify(text)
        if failure["kind"] == "other" and bad.get("type"):
            failure["message"] = f"{bad.get('type')}: {failure['message']}"[:300]
        result["failures"][f"{binary}\t{case.get('name')}"] = failure
    json.dump(result, open(out_path, "w"), indent=1)


def flagged(results_dir):
    names = set()
    for path in Path(results_dir).glob("*.json"):
        if path.name.startswith(("test", "nextest")):
            for key, failure in json.load(open(path))["failures"].items():
                if failure["kind"] == "leak":
                    names.add(key)
    for key in sorted(names):
        print(key)


# ---------------------------------------------------------------------------------------------
# valgrind's output


def valgrind(log_path):
    """Definitely and indirectly lost bytes in one valgrind log, the loss records behind them,
    and whether the run finished."""
    if not os.path.exists(log_path):
        return None
    text = open(log_path, errors="replace").read()
    lost = {"definite": 0, "indirect": 0, "records": [], "finished": "ERROR SUMMARY" in text}
    for kind in ("definite", "indirect"):
        m = re.search(kind + r"ly lost: ([\d,]+) bytes", text)
        if m:
            lost[kind] = int(m.group(1).replace(",", ""))
    for m in re.finditer(
        r"==\d+== ([\d,]+(?: \([\d,]+ direct, [\d,]+ indirect\))?) bytes in ([\d,]+) blocks are "
        r"(definitely|indirectly) lost in loss record[^\n]*\n((?:==\d+==    (?:at|by) [^\n]*\n)+)",
        text,
    ):
        frames = re.findall(r"(?:at|by) 0x[0-9A-F]+: ([^\n]*)", m.group(4))
        own = [
            f
            for f in frames
            if not re.search(r"vg_replace_malloc|^(?:<?)(?:alloc|core|std|leakcheck)::|__rust", f)
        ]
        lost["records"].append(
            f"{m.group(1)} bytes in {m.group(2)} blocks {m.group(3)} lost at "
            + (own[0] if own else frames[0] if frames else "?")
        )
    return lost


# ---------------------------------------------------------------------------------------------
# summary

CONFIGS = [
    ("test", "cargo test"),
    ("test-8", "`--test-threads=8`"),
    ("test-1", "`--test-threads=1`"),
    ("nextest", "nextest"),
]
BACKTRACE = [("bt-unset", "RB unset"), ("bt-1", "RB=1")]


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


def summary(out_dir, manifest):
    out = Path(out_dir)
    info = load(out / "results" / "run.json") or {}
    crates = [
        line.split()[:2]
        for line in open(manifest)
        if line.strip() and not line.startswith("#")
        and (out / "results" / line.split()[0] / "meta.json").exists()
    ]
    configs = [
        (f"{c}.{b}", f"{cl}, {bl}")
        for c, cl in CONFIGS
        for b, bl in BACKTRACE
        if any((out / "results").glob(f"*/{c}.{b}.json"))
    ]
    print("# leakcheck on third-party test suites\n")
    print(
        f"leakcheck at `{info.get('leakcheck', '?')}`, {info.get('profile', 'debug')} builds, "
        f"last run {info.get('date', '?')}.\n"
    )
    print(
        "Every test of each suite runs under `#[leakcheck::leakcheck]` where the form allows it "
        "(`checked`: tests that fail when `LEAKCHECK` holds an invalid value, so the check "
        "really runs). `baseline`: tests that fail in the unmodified suite without leakcheck "
        "(`cargo test`, default threads), with `RUST_BACKTRACE` unset / =1.\n"
    )
    print("| crate | version | tests | ignored | checked | unchecked forms | baseline failures |")
    print("|---|---|---:|---:|---:|---|---|")
    totals = {"tests": 0, "checked": 0}
    per_crate = {}
    for name, version in crates:
        res = out / "results" / name
        listed = load(res / "list.json") or {}
        checked = load(res / "checked.json")
        baselines = {bt: load(res / f"baseline.{bt}.json") for bt, _ in BACKTRACE}
        baseline = baselines["bt-unset"] or load(res / "baseline.json")
        notes = load(out / name / "leakcheck-annotations.json") or {}
        build = res / "build.log"
        if build.exists() and "Finished" not in build.read_text(errors="replace"):
            error = next(
                (l for l in build.read_text(errors="replace").splitlines() if l.startswith("error")),
                "see build.log",
            )
            error = error.replace("`", "'")
            print(f"| {name} | {version} | - | - | - | does not build with leakcheck: `{error}` | - |")
            continue
        n_tests = listed.get("tests", 0)
        n_checked = (
            sum(1 for f in checked["failures"].values() if f["kind"] == "leakcheck"
                and "LEAKCHECK=" in f["message"])
            if checked
            else 0
        )
        totals["tests"] += n_tests
        totals["checked"] += n_checked
        forms = [f"{form} x{n}" for form, n in notes.get("unchecked", {}).items()]
        forms += [f"own `#[global_allocator]`: {p}" for p in notes.get("own_allocator", [])]
        parts = []
        for bt, _ in BACKTRACE:
            b = baselines[bt] or (baseline if bt == "bt-unset" else None)
            part = "not run" if b is None else str(len(b["failures"]))
            if b and b["incomplete"]:
                part += f" (+ incomplete: {', '.join(b['incomplete'])})"
            parts.append(part)
        base = " / ".join(parts)
        per_crate[name] = {
            bt: set((baselines[bt] or (baseline if bt == "bt-unset" else None) or {}).get("failures", {}))
            for bt, _ in BACKTRACE
        }
        print(
            f"| {name} | {version} | {n_tests} | {baseline['ignored'] if baseline else '?'} | {n_checked} | "
            f"{'; '.join(forms) or '-'} | {base} |"
        )
    print(f"| **all** | | **{totals['tests']}** | | **{totals['checked']}** | | |\n")

    # verdicts of valgrind on single flagged tests
    single = {}
    for name, _ in crates:
        for path in (out / "results" / name / "valgrind").glob("single.*.log"):
            if not path.with_suffix(".json").exists():
                continue  # still running
            key = json.load(open(path.with_suffix(".json")))["key"]
            single[(name, key)] = valgrind(path)

    print("## Failures per configuration\n")
    print(
        "Cell: tests failed with a leakcheck report (of which valgrind-clean = false alarms, "
        "when `--valgrind` ran) / tests failed otherwise (of which also failing in the "
        "baseline). `RB`: `RUST_BACKTRACE`.\n"
    )
    print("| crate | " + " | ".join(label for _, label in configs) + " |")
    print("|---|" + "---:|" * len(configs))
    flagged_in = {}
    others = {}
    column_totals = [[0, 0, 0, 0] for _ in configs]
    for name, _ in crates:
        cells = []
        baseline = per_crate.get(name, {})
        for i, (cid, _) in enumerate(configs):
            base_fail = baseline.get(cid.split(".")[1], set())
            r = load(out / "results" / name / f"{cid}.json")
            if r is None:
                cells.append("-")
                continue
            leaks = [k for k, f in r["failures"].items() if f["kind"] == "leak"]
            other = [k for k, f in r["failures"].items() if f["kind"] != "leak"]
            false = [k for k in leaks if single.get((name, k)) and single[(name, k)]["finished"]
                     and single[(name, k)]["definite"] + single[(name, k)]["indirect"] == 0]
            in_base = [k for k in other if k in base_fail]
            for k in leaks:
                flagged_in.setdefault((name, k), []).append((cid, r["failures"][k]))
            for k in other:
                others.setdefault((name, k), []).append((cid, r["failures"][k]))
            cell = f"{len(leaks)}"
            if (out / "results" / name / "valgrind").is_dir():
                cell += f" ({len(false)})"
            cell += f" / {len(other)}"
            if other:
                cell += f" ({len(in_base)})"
            if r["incomplete"]:
                cell += f" + {len(r['incomplete'])} incomplete"
            cells.append(cell)
            t = column_totals[i]
            t[0] += len(leaks)
            t[1] += len(false)
            t[2] += len(other)
            t[3] += len(in_base)
        print(f"| {name} | " + " | ".join(cells) + " |")
    valgrind_ran = any((out / "results" / name / "valgrind").is_dir() for name, _ in crates)
    cells = [
        f"{t[0]}" + (f" ({t[1]})" if valgrind_ran else "") + f" / {t[2]}" + (f" ({t[3]})" if t[2] else "")
        for t in column_totals
    ]
    print("| **all** | " + " | ".join(f"**{c}**" for c in cells) + " |\n")

    if flagged_in:
        print("## Tests leakcheck reported\n")
        print(
            "Configurations: how many of the runs above flagged the test. Report: bytes "
            "(smallest-largest over those runs) and the first frame of the largest group. "
            "valgrind: the same test binary, this test alone, `--test-threads=1`, "
            "`LEAKCHECK=off`; definitely + indirectly lost bytes.\n"
        )
        print("| crate | test | configurations | report | valgrind |")
        print("|---|---|---|---|---|")
        for (name, key), hits in sorted(flagged_in.items()):
            target, test = key.split("\t")
            sizes = sorted(f["bytes"] for _, f in hits)
            size = f"{sizes[0]:,}" if sizes[0] == sizes[-1] else f"{sizes[0]:,}-{sizes[-1]:,}"
            sites = sorted({f["site"] or "?" for _, f in hits})
            v = single.get((name, key))
            if v is None:
                verdict = "not run"
            elif not v["finished"]:
                verdict = "did not finish"
            elif v["definite"] + v["indirect"] == 0:
                verdict = "0 lost (false alarm)"
            else:
                verdict = f"{v['definite']:,} definite, {v['indirect']:,} indirect"
            configs_hit = ", ".join(c for c, _ in hits)
            print(
                f"| {name} | `{target}` `{test}` | {len(hits)}: {configs_hit} | {size} B at "
                f"{'; '.join(f'`{s}`' for s in sites)} | {verdict} |"
            )
        print()

    if others:
        print("## Other failures\n")
        print("| crate | test | configurations | baseline (RB unset / =1) | message |")
        print("|---|---|---|---|---|")
        for (name, key), hits in sorted(others.items()):
            target, test = key.split("\t")
            base = per_crate.get(name, {})
            in_base = " / ".join(
                "fails" if key in base.get(bt, set()) else "passes" for bt, _ in BACKTRACE
            )
            message = hits[0][1].get("message", "").replace("\n", " ").replace("|", "\\|")[:160]
            print(
                f"| {name} | `{target}` `{test}` | {len(hits)}: {', '.join(c for c, _ in hits)} "
                f"| {in_base} | {message} |"
            )
        print()

    whole = []
    for name, _ in crates:
        for path in sorted((out / "results" / name / "valgrind").glob("whole.*.log")):
            if not path.with_suffix(".json").exists():
                continue  # still running
            whole.append((name, json.load(open(path.with_suffix(".json"))), valgrind(path)))
    whole.sort(key=lambda w: (w[0], w[1]["target"]))
    if whole:
        print("## valgrind on whole test binaries\n")
        print(
            "Each test binary once, `--test-threads=1`, `LEAKCHECK=off`, under "
            "`valgrind --leak-check=full`.\n"
        )
        print("| crate | binary | seconds | definitely lost | indirectly lost | loss records |")
        print("|---|---|---:|---:|---:|---|")
        for name, meta, v in whole:
            status = f"{meta.get('seconds', '?')}"
            if meta.get("exit") == 124:
                status += " (timed out)"
            if v is None or not v["finished"]:
                print(f"| {name} | `{meta['target']}` | {status} | - | - | did not finish |")
                continue
            records = "; ".join(v["records"][:4]) or "-"
            if len(v["records"]) > 4:
                records += f"; ... {len(v['records']) - 4} more"
            print(
                f"| {name} | `{meta['target']}` | {status} | {v['definite']:,} | "
                f"{v['indirect']:,} | {records.replace('|', '/')} |"
            )
        print()

    times = load(out / "results" / "times.json") or {}
    if times:
        print("## Time\n")
        print(
            "Wall-clock seconds of the latest run of each step (builds: warm if the step ran "
            "before).\n"
        )
        print("| crate | build | baselines | configurations | valgrind, reported tests |")
        print("|---|---:|---:|---:|---:|")
        sums = [0, 0, 0, 0]
        for name, _ in crates:
            row = [0, 0, 0, 0]
            for step, seconds in times.items():
                crate, _, what = step.partition(".")
                if crate != name or what == "baseline":  # "baseline": an older run's name
                    continue
                column = (
                    0 if what == "build"
                    else 1 if what.startswith("baseline")
                    else 3 if what.startswith("valgrind")
                    else 2
                )
                row[column] += seconds
            sums = [a + b for a, b in zip(sums, row)]
            print(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
        print("| **all** | " + " | ".join(f"**{v}**" for v in sums) + " |\n")


def main(argv):
    command, *args = argv
    if command == "prepare":
        prepare(*args)
    elif command == "libtest":
        libtest(*args)
    elif command == "junit":
        junit(*args)
    elif command == "flagged":
        flagged(*args)
    elif command == "list":
        # `--list --format terse` output of every binary: count tests
        tests = sum(1 for line in open(args[0]) if line.endswith(": test\n"))
        json.dump({"tests": tests}, open(args[1], "w"))
    elif command == "summary":
        summary(*args)
    else:
        fail(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])

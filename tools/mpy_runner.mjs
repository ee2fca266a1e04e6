#!/usr/bin/env node
// Runs the portable core under MicroPython 1.27 (the WebAssembly build from npm):
// imports every module under firmware/, then runs every test_* function in
// tests/portable/test_*.py. pytest runs the same tests under CPython.
//
//   node tools/mpy_runner.mjs        (from anywhere; paths are relative to this file)
//   node tools/mpy_runner.mjs -v     (also print a PASS line per test)
//
// Environment: MPY_STEP_TIMEOUT_S (default 60): a test or import that has not
// finished after this many seconds is reported as hung and the run stops.
//
// The interpreter runs in a worker thread so that a test that blocks (a poll with
// no timeout, an endless loop) can be stopped and named instead of hanging CI.
// The last line is always "micropython: N passed, N failed"; the exit status is 1
// when a test failed, a module failed to import, or no test ran.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

const HEAP_BYTES = 64 * 1024 * 1024;
const PYSTACK_WORDS = 16 * 1024;
const APP = "/app";          // the repository's .py files, as firmware/... and tests/...
const RUNNER = "/runner";    // the harness module, kept off the application's path
const MARK = "\x01"; // harness lines starting with this are protocol, not output

// ---------------------------------------------------------------------------
// The Python side: runs inside MicroPython, talks back through marker lines.
const HARNESS = String.raw`
import sys, gc

def _mark(*parts):
    print("\x01" + " ".join(parts))

def _function(obj):
    # a closure (a decorated test) is not of type function in MicroPython
    return callable(obj) and not isinstance(obj, type)

def _names(mod, ordered):
    names = [n for n in ordered if _function(getattr(mod, n, None))]
    extra = [n for n in dir(mod) if n.startswith("test_") and n not in names
             and _function(getattr(mod, n))]
    extra.sort()
    return names + extra

def _fail(label, exc):
    print("FAIL " + label)
    sys.print_exception(exc, sys.stdout)

def main(firmware, tests, verbose):
    impl = sys.implementation
    print("MicroPython %d.%d.%d (%s, %s port); heap %d MiB" % (
        impl.version[0], impl.version[1], impl.version[2],
        getattr(impl, "_build", "?"), sys.platform, ${HEAP_BYTES >> 20}))
    sys.path.insert(0, "${APP}")
    for name in firmware:
        _mark("I", name)
        try:
            __import__(name)
        except BaseException as exc:
            _mark("X", name)
            _fail(name + " (import)", exc)
        gc.collect()
    for modname, ordered in tests:
        _mark("I", modname)
        try:
            __import__(modname)
            mod = sys.modules[modname]
        except BaseException as exc:
            _mark("Y", modname)
            _fail(modname + " (import)", exc)
            continue
        names = _names(mod, ordered)
        if not names:
            print("note: %s has no test_* functions" % modname)
        for name in names:
            label = modname.split(".")[-1] + "::" + name
            _mark("T", label)
            try:
                getattr(mod, name)()
            except BaseException as exc:
                _mark("F", label)
                _fail(label, exc)
            else:
                _mark("P", label)
                if verbose:
                    print("PASS " + label)
            gc.collect()
    _mark("D")
`;

// ---------------------------------------------------------------------------
// Worker: owns the interpreter.
async function workerMain() {
  const { files, firmware, tests, verbose } = workerData;
  const send = (kind, text) => parentPort.postMessage({ kind, text });
  const { loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript");
  const mp = await loadMicroPython({
    heapsize: HEAP_BYTES,
    pystack: PYSTACK_WORDS,
    linebuffer: true,
    stdout: (line) => send(line.startsWith(MARK) ? "mark" : "out", line.startsWith(MARK) ? line.slice(1) : line),
    stderr: (line) => send("err", line),
  });
  const made = new Set(["/"]);
  const mkdirs = (dir) => {
    if (made.has(dir)) return;
    mkdirs(path.posix.dirname(dir));
    try { mp.FS.mkdir(dir); } catch { /* exists */ }
    made.add(dir);
  };
  for (const [rel, text] of files) {
    const dest = path.posix.join(APP, rel);
    mkdirs(path.posix.dirname(dest));
    mp.FS.writeFile(dest, text);
  }
  const literal = (value) => "json.loads(" + JSON.stringify(JSON.stringify(value)) + ")";
  mkdirs(RUNNER);
  mp.FS.writeFile(`${RUNNER}/handpos_mpy_harness.py`, HARNESS);
  try {
    mp.runPython(`import sys, json\nsys.path.insert(0, "${RUNNER}")\nimport handpos_mpy_harness\nsys.path.remove("${RUNNER}")\n` +
                 `handpos_mpy_harness.main(${literal(firmware)}, ${literal(tests)}, ${verbose ? "True" : "False"})\n`);
    send("done", "");
  } catch (err) {
    send("crash", String((err && err.message) || err));
  }
}

// ---------------------------------------------------------------------------
// Main thread: finds the files, starts the worker, keeps the score.
function walk(root, rel, out) {
  const dir = path.join(root, rel);
  if (!fs.existsSync(dir)) return out;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (entry.name.startsWith(".") || entry.name === "__pycache__") continue;
    const child = path.posix.join(rel, entry.name);
    if (entry.isDirectory()) walk(root, child, out);
    else if (entry.isFile() && entry.name.endsWith(".py")) out.push(child);
  }
  return out;
}

function moduleName(rel) {
  const parts = rel.replace(/\.py$/, "").split("/");
  if (parts[parts.length - 1] === "__init__") parts.pop();
  return parts.join(".");
}

function mainThread() {
  const started = Date.now();
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
  const verbose = process.argv.includes("-v") || process.argv.includes("--verbose");
  const stepTimeout = Number(process.env.MPY_STEP_TIMEOUT_S || 60) * 1000;

  const fwFiles = walk(root, "firmware", []);
  const testFiles = walk(root, "tests/portable", []);
  // tests/portable is imported as the package tests.portable, so tests/__init__.py
  // (if any) must exist in the interpreter too.
  const support = fs.existsSync(path.join(root, "tests/__init__.py")) ? ["tests/__init__.py"] : [];
  const files = [...fwFiles, ...support, ...testFiles].map((rel) => [rel, fs.readFileSync(path.join(root, rel), "utf8")]);

  const firmware = fwFiles.map(moduleName);
  const tests = testFiles
    .filter((rel) => /^test_.*\.py$/.test(path.posix.basename(rel)))
    .map((rel) => {
      const source = fs.readFileSync(path.join(root, rel), "utf8");
      const ordered = [...source.matchAll(/^def (test_\w*)\s*\(/gm)].map((m) => m[1]);
      return [moduleName(rel), ordered];
    });

  if (firmware.length === 0) console.log(`no .py files under ${path.join(root, "firmware")}`);

  // failed counts failing tests and modules that fail to import, firmware or test
  let passed = 0, failed = 0, testsFailed = 0, fwBroken = 0, fwTried = 0, current = "startup", finished = false;
  const fwNames = new Set(firmware);
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { files, firmware, tests, verbose } });
  let timer = null;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      console.log(`FAIL ${current}\n  still running after ${stepTimeout / 1000} s: it blocks (a poll or loop with no way out?); the run stops here`);
      failed += 1;
      testsFailed += 1;
      finish(true);
    }, stepTimeout);
  };

  const finish = (broken) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    worker.terminate();
    const seconds = ((Date.now() - started) / 1000).toFixed(2);
    const ran = passed + testsFailed;
    console.log(`imported ${fwTried} of ${firmware.length} firmware modules (${fwBroken} failed), ` +
                `ran ${ran} tests from ${tests.length} files in ${seconds} s`);
    if (ran === 0) console.log("no tests ran: that is a failure too");
    console.log(`micropython: ${passed} passed, ${failed} failed`);
    process.exitCode = broken || failed > 0 || ran === 0 ? 1 : 0;
  };

  arm();
  worker.on("message", ({ kind, text }) => {
    if (finished) return;
    if (kind === "out") console.log(text);
    else if (kind === "err") console.error(text);
    else if (kind === "mark") {
      const [tag, ...rest] = text.split(" ");
      const what = rest.join(" ");
      if (tag === "I" || tag === "T") { current = tag === "I" ? `${what} (import)` : what; arm(); }
      if (tag === "I" && fwNames.has(what)) fwTried += 1;
      else if (tag === "P") passed += 1;
      else if (tag === "F") { testsFailed += 1; failed += 1; }
      else if (tag === "X") { fwBroken += 1; failed += 1; }
      else if (tag === "Y") failed += 1;
    } else if (kind === "crash") {
      console.log(`the harness itself failed during ${current}:\n${text}`);
      finish(true);
    } else if (kind === "done") finish(false);
  });
  worker.on("error", (err) => {
    if (finished) return;
    const missing = err && err.code === "ERR_MODULE_NOT_FOUND";
    console.log(missing ? `MicroPython is not installed: run "npm ci" in ${root} (${err.message})`
                        : `the MicroPython worker died during ${current}: ${(err && err.stack) || err}`);
    finish(true);
  });
  worker.on("exit", () => {
    if (!finished) { console.log(`the MicroPython worker exited during ${current}`); finish(true); }
  });
}

if (isMainThread) mainThread();
else await workerMain();

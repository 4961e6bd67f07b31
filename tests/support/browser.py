"""Headless Chromium for the report tests (Debian's package, installed by ensure_system_packages.sh)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ENSURE_SCRIPT = Path(__file__).with_name("ensure_system_packages.sh")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


class ChromiumUnavailable(RuntimeError):
    pass


def ensure_chromium() -> tuple[str, float]:
    """Path of the chromium binary, installing it if missing; and the seconds that took."""
    found = shutil.which("chromium")
    if found:
        return found, 0.0
    started = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    found = shutil.which("chromium")
    if proc.returncode != 0 or not found:
        raise ChromiumUnavailable(
            f"chromium is not installed and {ENSURE_SCRIPT} could not install it "
            f"(exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
            "Install it with `apt-get install -y chromium fonts-noto-cjk` (as root)."
        )
    return found, time.perf_counter() - started


def run_chromium(args: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    binary, _ = ensure_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def dump_dom(html_file: Path) -> str:
    proc = run_chromium(["--dump-dom", html_file.resolve().as_uri()])
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise AssertionError(
            f"chromium --dump-dom failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    return proc.stdout


def screenshot(html_file: Path, png: Path, *, width: int = 1280, height: int = 2000) -> Path:
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    proc = run_chromium(
        [
            f"--screenshot={png.resolve()}",
            f"--window-size={width},{height}",
            html_file.resolve().as_uri(),
        ]
    )
    if proc.returncode != 0 or not png.exists():
        raise AssertionError(
            f"chromium --screenshot failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    return png


#: Appended to a copy of a page by `measure`: writes what the tests read into the DOM, which
#: `--dump-dom` then prints (headless Chromium has no other channel back).
MEASURE_SCRIPT = """
<script>
(function () {
  var root = document.documentElement;
  var wide = [];
  document.querySelectorAll("body *").forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.right > window.innerWidth + 1 && !el.closest(".table-wrap")) {
      wide.push(el.tagName + (el.id ? "#" + el.id : "") + "." + el.className);
    }
  });
  var result = {
    scrollWidth: root.scrollWidth,
    innerWidth: window.innerWidth,
    tooWide: wide.slice(0, 10),
  };
  document.querySelectorAll("code, script, style").forEach(function (el) { el.remove(); });
  result.text = document.body.innerText;
  var out = document.createElement("textarea");
  out.id = "crm-measure";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
})();
</script>
"""


def measure(html_file: Path, width: int, *, height: int = 1000) -> dict:
    """Lay out a copy of `html_file` at `width` px in headless Chromium: the document's
    scrollWidth, the window's innerWidth, the elements past the right edge (outside boxes
    that scroll on their own) and the visible text without <code> elements."""
    import json
    from html import unescape

    page = html_file.read_text(encoding="utf-8")
    probe = html_file.with_name(f".measure-{width}-{html_file.name}")
    probe.write_text(page.replace("</body>", MEASURE_SCRIPT + "</body>"), encoding="utf-8")
    try:
        proc = run_chromium(
            [f"--window-size={width},{height}", "--dump-dom", probe.resolve().as_uri()]
        )
    finally:
        probe.unlink(missing_ok=True)
    start = proc.stdout.find('<textarea id="crm-measure">')
    if proc.returncode != 0 or start < 0:
        raise AssertionError(
            f"chromium --dump-dom failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    body = proc.stdout[start + len('<textarea id="crm-measure">') :]
    return json.loads(unescape(body[: body.index("</textarea>")]))


#: Chromium with the network off: every host name resolves to nothing, and no proxy is asked.
OFFLINE_FLAGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
]

#: Appended to a copy of a page by `render_offline`: once the page has loaded and its fonts
#: are ready, writes into the DOM what the tests read (`--dump-dom` prints it).
OFFLINE_PROBE = """
<script>
window.addEventListener("load", function () {
  document.fonts.ready.then(function () {
    var resources = performance.getEntriesByType("resource").map(function (e) {
      return e.name;
    });
    var references = [];
    document.querySelectorAll("script[src], link[href], img[src], iframe[src]").forEach(
      function (el) { references.push(el.src || el.href); });
    var tables = [];
    document.querySelectorAll("table").forEach(function (table) {
      if (!table.tBodies.length) { return; }  // bootstrap-table's copy of a header
      var rows = Array.prototype.filter.call(table.querySelectorAll("tbody tr"), function (tr) {
        return !tr.classList.contains("no-records-found") && tr.textContent.trim() !== "";
      });
      // a table inside a table's cell is a value (GX: an empty dict shows as an empty table)
      tables.push({id: table.id || table.className, rows: rows.length,
                   nested: !!table.parentElement.closest("table")});
    });
    var fonts = [];
    document.fonts.forEach(function (face) {
      fonts.push({family: face.family, status: face.status});
    });
    var probe = document.querySelector(__SELECTOR__);
    var style = probe ? getComputedStyle(probe) : null;
    var out = document.createElement("textarea");
    out.id = "crm-offline";
    out.textContent = JSON.stringify({
      resources: resources,
      references: references,
      tables: tables,
      fonts: fonts,
      jquery: typeof window.jQuery === "function",
      style: style ? {position: style.position, paddingLeft: style.paddingLeft,
                      fontFamily: style.fontFamily, display: style.display} : null,
      text: document.body.innerText.slice(0, 50000),
      title: document.title,
    });
    document.body.appendChild(out);
  });
});
</script>
"""


def render_offline(
    html_file: Path, *, selector: str = "body", fragment: str = "", budget_ms: int = 10000
) -> dict:
    """Open a copy of `html_file` (beside it, so relative links resolve) in headless Chromium
    with the network off, and return what loaded: `resources` (every URL the page fetched),
    `references` (the src/href of its scripts, styles, images and frames), `tables` (rows with text per table), `fonts` (each font face
    and its status), `jquery` and `style` (the computed style of `selector`). `fragment`:
    opened at `#fragment` (a page of a single-page app such as the dbt docs)."""
    import json
    from html import unescape

    page = html_file.read_text(encoding="utf-8")
    probe_script = OFFLINE_PROBE.replace("__SELECTOR__", json.dumps(selector))
    probe = html_file.with_name(f".offline-{html_file.name}")
    if "</body>" in page:
        page = page.replace("</body>", probe_script + "</body>", 1)
    else:
        page = page + probe_script
    probe.write_text(page, encoding="utf-8")
    try:
        proc = run_chromium(
            [
                *OFFLINE_FLAGS,
                f"--virtual-time-budget={budget_ms}",
                "--window-size=1280,1000",
                "--dump-dom",
                probe.resolve().as_uri() + (f"#{fragment}" if fragment else ""),
            ]
        )
    finally:
        probe.unlink(missing_ok=True)
    start = proc.stdout.find('<textarea id="crm-offline">')
    if proc.returncode != 0 or start < 0:
        raise AssertionError(
            f"chromium --dump-dom failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    body = proc.stdout[start + len('<textarea id="crm-offline">') :]
    return json.loads(unescape(body[: body.index("</textarea>")]))

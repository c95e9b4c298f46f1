"""The report's stylesheet, inlined in every page (no external fonts: the system's own).

The palette is Okabe and Ito's, which stays distinguishable for the common colour-vision
deficiencies; a status is also said in words, never by colour alone.
"""

CSS = """
:root{--ink:#1d2330;--muted:#5b6474;--line:#e3e6ec;--panel:#fff;--bg:#f5f6f8;
--bad:#c0392b;--bad-bg:#fdecea;--good:#1e8449;--good-bg:#e9f7ef;--warn:#a35c00;
--warn-bg:#fff4e0;--blue:#0072B2;--c0:#0072B2;--c1:#D55E00;--c2:#009E73;--c3:#CC79A7;
--c4:#E69F00;--c5:#56B4E9;--c6:#6b4c9a}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px 20px 8px}
footer{max-width:1040px;margin:0 auto;padding:8px 20px 32px;color:var(--muted);font-size:12px}
h1{margin:4px 0 2px;font-size:28px;line-height:1.2}
h2{font-size:19px;margin:0 0 6px}
h3{font-size:15px;margin:18px 0 4px;color:var(--muted);font-weight:600}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
section,header.verdict{background:var(--panel);border:1px solid var(--line);border-radius:10px;
padding:18px 22px;margin:0 0 16px}
header.verdict{border-top:6px solid var(--blue)}
.status-IssuesFound header.verdict,.status-Error header.verdict{border-top-color:var(--bad)}
.status-NoIssuesFound header.verdict{border-top-color:var(--good)}
.status-Stopped header.verdict{border-top-color:var(--muted)}
.eyebrow{margin:0;color:var(--muted);font-size:13px;text-transform:uppercase;
letter-spacing:.06em}
.live{display:inline-block;margin-left:8px;padding:0 7px;border-radius:9px;background:var(--blue);
color:#fff;font-size:11px;letter-spacing:.04em}
.badge{display:inline-block;padding:2px 12px;border-radius:8px}
.badge.IssuesFound,.badge.Error{background:var(--bad-bg);color:var(--bad)}
.badge.NoIssuesFound{background:var(--good-bg);color:var(--good)}
.badge.InProgress{background:#e8f1fa;color:var(--blue)}
.badge.Stopped{background:#eceef1;color:var(--muted)}
.trial{margin:0 0 8px;color:var(--muted)}
.why{margin:8px 0 14px;max-width:900px}
.lead{margin:0 0 10px;color:var(--ink);max-width:900px}
.tiles{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px}
.tile{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:#fafbfc}
.tile .label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em;
white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tile .value{font-size:26px;font-weight:650;font-variant-numeric:tabular-nums}
.tile .note{font-size:12px;color:var(--muted)}
.tile.bad{border-color:#f1b5ad;background:var(--bad-bg)}.tile.bad .value{color:var(--bad)}
.tile.good .value{color:var(--good)}
.tile.waiting{background:var(--warn-bg);border-color:#f3d19c}
@media (max-width:720px){.tiles{grid-template-columns:repeat(2,minmax(0,1fr))}}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums;
margin:8px 0}
caption{text-align:left;color:var(--muted);font-size:12px;padding:4px 0}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;
overflow-wrap:anywhere}
.legend li,.why,.lead{overflow-wrap:anywhere}
thead th{color:var(--muted);font-weight:600;border-bottom:2px solid var(--line)}
.num{text-align:right}
tr.above td{background:var(--bad-bg)}
tr.largest td:first-child,tr.smallest td:first-child{font-weight:700}
.yes{color:var(--bad);font-weight:600}.no{color:var(--good)}
.yes,.no,#checks thead th,#checks td:first-child{white-space:nowrap;overflow-wrap:normal}
details{margin:10px 0 0}
summary{cursor:pointer;color:var(--blue);font-size:13px}
.scroll{overflow-x:auto}
.matrix{width:auto}
.matrix th[scope=row]{max-width:16em}
.matrix td.cell{min-width:46px}
.matrix td.right{background:rgba(0,158,115,calc(var(--share)*0.55))}
.matrix td.wrong{background:rgba(213,94,0,calc(var(--share)*0.9))}
.pairs{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:4px 0;
font-size:13px}
.pairs dt{color:var(--muted)}.pairs dd{margin:0;font-variant-numeric:tabular-nums}
.columns{display:grid;grid-template-columns:1fr 1fr;gap:24px}
@media (max-width:720px){.columns{grid-template-columns:1fr}}
.empty,.note{color:var(--muted);font-size:13px}
.warning{background:var(--warn-bg);border-left:4px solid var(--warn);padding:6px 10px;
font-size:13px}
.outcome{font-weight:600}.outcome.failed,.outcome.timed_out{color:var(--bad)}
.outcome.done{color:var(--good)}
svg.chart{width:100%;height:auto;display:block;margin:4px 0}
svg .grid{stroke:#eceef2}
svg .tick{font-size:11px;fill:var(--muted)}
svg .axis-label{font-size:12px;fill:var(--muted)}
svg .bar{fill:#8fb8d8}
svg .dots{stroke:#6b9ac4;stroke-width:5;stroke-linecap:round;stroke-opacity:.55;fill:none}
svg .dots.above{stroke:var(--bad);stroke-opacity:.9}
svg .dot.above{fill:var(--bad);stroke:#fff;stroke-width:1}
svg .bar.largest{fill:var(--blue)}
svg .bar.smallest{fill:var(--c1)}
svg .bar.above{fill:var(--bad)}
svg .annotation{font-size:12px;font-weight:600;fill:var(--ink)}
svg .threshold{stroke:var(--bad);stroke-width:1.5;stroke-dasharray:6 4}
svg .threshold-label{font-size:11px;fill:var(--bad)}
svg .annotation,svg .threshold-label,svg .marker-label{paint-order:stroke;stroke:#fff;
stroke-width:3px;stroke-linejoin:round}
svg .marker{stroke:var(--ink);stroke-width:1;stroke-dasharray:2 3}
svg .marker.start{stroke:var(--muted)}
svg .marker-label{font-size:11px;fill:var(--ink)}
svg .marker-label.start{fill:var(--muted)}
svg .line{fill:none;stroke-width:2}
svg .line.dashed{stroke-dasharray:5 4;stroke-width:1.5}
.c0{stroke:var(--c0);fill:var(--c0)}.c1{stroke:var(--c1);fill:var(--c1)}
.c2{stroke:var(--c2);fill:var(--c2)}.c3{stroke:var(--c3);fill:var(--c3)}
.c4{stroke:var(--c4);fill:var(--c4)}.c5{stroke:var(--c5);fill:var(--c5)}
svg path.line{fill:none}
.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:6px 18px;
font-size:13px}
.swatch{display:inline-block;width:18px;height:0;border-top:3px solid;vertical-align:middle;
margin-right:6px}
.swatch.c0{border-color:var(--c0)}.swatch.c1{border-color:var(--c1)}
.swatch.c2{border-color:var(--c2)}.swatch.c3{border-color:var(--c3)}
.swatch.c4{border-color:var(--c4)}.swatch.c5{border-color:var(--c5)}
.swatch.dashed{border-top-style:dashed}
"""

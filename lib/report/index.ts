// videoperceiver/report — the demo's self-contained report.html and its SVG charts.
export { renderReport, writeReport, type ReportInput, type ReportRun, type ReportRow, type ReportSample } from './html.js';
export { lineChart, barChart, differencePlot, type Series } from './charts.js';
export { pairedComparison, signFlipPValue, type PairedComparison, type PairedComparisonOptions } from './stats.js';

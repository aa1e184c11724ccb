//! Reconciliation exports of one organization and period (issue 14, "Surfaces"): the treasury
//! office's files, as CSV (`;`-separated, decimal comma, UTF-8: what an Italian spreadsheet
//! opens) or XLSX (`rust_xlsxwriter`: amounts and dates as numbers and dates in their cells,
//! a bold frozen header row, column widths). Column names are Italian and follow MPay's
//! quadratura fields where it has them (`identificativoFlusso`, `dataRegolamento`,
//! `identificativoUnivocoRegolamento`, `numeroTotalePagamenti`, `importoTotalePagamenti`, `IUV`,
//! `IUR`, `esitoPagamento`, `dataEsito`; `../shared/mpay/INTERFACES.md` §8).
//!
//! - `payments`: every receipt transfer paid to the organization whose payment day (Europe/Rome)
//!   is in the period, with its label (`RT_IUF_TES`, `RT_IUF`, `RT_NO_IUF`, …) and its flow;
//! - `flows`: every row of the latest revision of each flow whose regulation day is in the
//!   period (the acquisition day when the flow has none), with the flow's header, settlement and
//!   flags repeated on each row and the row's own problems;
//! - `reconciliation`: counts and amounts per day, flow and label (payments by payment day, rows
//!   without a receipt by their outcome day, unexplained credits by value day), then one total
//!   line per label.
//!
//! Pure: [`table`] selects from a [`Report`] and the stored flows, [`render`] writes the bytes.
//! Amounts are integer cents up to the cell (CSV text `12,34`, XLSX number `12.34` with the
//! format `#,##0.00`).

use chrono::NaiveDate;
use mpay_messages::domain::reconcile::{Label, Settlement};
use mpay_messages::time::rome_date;
use mpay_storage::reconciliation::{Report, StoredFlow};

/// What an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExportKind {
    /// Receipts of the period with their label.
    Payments,
    /// Flows of the period and their rows.
    Flows,
    /// Totals per day, flow and label.
    Reconciliation,
}

impl ExportKind {
    /// Every kind.
    pub const ALL: [ExportKind; 3] = [Self::Payments, Self::Flows, Self::Reconciliation];

    /// The name in URLs, file names and the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payments => "payments",
            Self::Flows => "flows",
            Self::Reconciliation => "reconciliation",
        }
    }

    /// Parses [`ExportKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }

    fn file_stem(self) -> &'static str {
        match self {
            Self::Payments => "pagamenti",
            Self::Flows => "flussi",
            Self::Reconciliation => "riconciliazione",
        }
    }
}

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExportFormat {
    /// CSV, `;`, decimal comma.
    Csv,
    /// Office Open XML workbook.
    Xlsx,
}

impl ExportFormat {
    /// Every format.
    pub const ALL: [ExportFormat; 2] = [Self::Csv, Self::Xlsx];

    /// `csv` / `xlsx` (also the file extension).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Xlsx => "xlsx",
        }
    }

    /// Parses [`ExportFormat::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s.trim())
    }

    /// The content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// A business period, both days included (Europe/Rome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

impl Period {
    fn contains(self, d: NaiveDate) -> bool {
        self.from <= d && d <= self.to
    }
}

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Text.
    Text(String),
    /// An amount in cents.
    Cents(i64),
    /// A whole number.
    Int(i64),
    /// A day.
    Date(NaiveDate),
    /// Nothing.
    Empty,
}

impl Cell {
    fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    fn opt_date(d: Option<NaiveDate>) -> Cell {
        d.map(Cell::Date).unwrap_or(Cell::Empty)
    }

    fn opt_text(s: Option<&str>) -> Cell {
        s.map(|s| Cell::Text(s.to_string())).unwrap_or(Cell::Empty)
    }
}

/// An export before it is written: a header and rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Sheet name.
    pub sheet: &'static str,
    /// Column names.
    pub header: Vec<&'static str>,
    /// Rows (as long as the header).
    pub rows: Vec<Vec<Cell>>,
}

/// Italian text of a settlement (MPay's `statoSquadratura`).
fn settlement_it(s: Settlement) -> &'static str {
    match s {
        Settlement::Awaiting => "IN_ATTESA_ACCREDITO",
        Settlement::Partial { .. } => "PARZIALE",
        Settlement::Settled => "QUADRATO",
        Settlement::Over { .. } => "ECCEDENTE",
    }
}

fn debug_list<T: std::fmt::Debug>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The flow's business day: its regulation day, else the day it was acquired.
fn flow_day(f: &StoredFlow) -> NaiveDate {
    f.flow
        .header
        .regulation_date
        .unwrap_or_else(|| rome_date(f.acquired_at))
}

/// Selects the lines of `kind` in `period` from the reconciliation `report` and the latest
/// revision of each stored flow (`flows`, as `SledReconciliation::flows` returns them).
pub fn table(report: &Report, flows: &[StoredFlow], kind: ExportKind, period: Period) -> Table {
    match kind {
        ExportKind::Payments => payments(report, period),
        ExportKind::Flows => flow_rows(report, flows, period),
        ExportKind::Reconciliation => totals(report, flows, period),
    }
}

fn payments(report: &Report, period: Period) -> Table {
    let mut lines: Vec<_> = report
        .payments
        .iter()
        .filter(|p| period.contains(rome_date(p.paid_at)))
        .collect();
    lines.sort_by(|a, b| {
        (a.paid_at, &a.receipt_id, a.id_transfer).cmp(&(b.paid_at, &b.receipt_id, b.id_transfer))
    });
    Table {
        sheet: "Pagamenti",
        header: vec![
            "dataPagamento",
            "IUV",
            "IUR",
            "indiceTrasferimento",
            "importo",
            "etichetta",
            "identificativoFlusso",
            "avvisi",
        ],
        rows: lines
            .into_iter()
            .map(|p| {
                vec![
                    Cell::Date(rome_date(p.paid_at)),
                    Cell::text(&p.iuv),
                    Cell::text(&p.receipt_id),
                    Cell::Int(i64::from(p.id_transfer)),
                    Cell::Cents(p.amount_cents),
                    Cell::text(p.label.code()),
                    Cell::opt_text(p.flow_id.as_deref()),
                    Cell::Text(debug_list(&p.warnings)),
                ]
            })
            .collect(),
    }
}

fn flow_rows(report: &Report, flows: &[StoredFlow], period: Period) -> Table {
    let mut rows = Vec::new();
    let mut chosen: Vec<&StoredFlow> = flows
        .iter()
        .filter(|f| period.contains(flow_day(f)))
        .collect();
    chosen.sort_by(|a, b| {
        (flow_day(a), &a.flow.header.flow_id).cmp(&(flow_day(b), &b.flow.header.flow_id))
    });
    for f in chosen {
        let h = &f.flow.header;
        let line = report.flows.iter().find(|l| l.flow_id == h.flow_id);
        let total = f.flow.counted_total_cents();
        let credited = line.map(|l| l.credited_cents).unwrap_or(0);
        let head = vec![
            Cell::text(&h.flow_id),
            Cell::Int(i64::from(f.revision())),
            Cell::Date(flow_day(f)),
            Cell::text(&h.regulation),
            Cell::text(h.psp_id.as_deref().unwrap_or(&h.sender_id)),
            Cell::Int(
                i64::try_from(f.flow.rows.iter().filter(|r| r.counted()).count())
                    .unwrap_or(i64::MAX),
            ),
            Cell::Cents(total),
            Cell::Cents(credited),
            Cell::text(
                line.map(|l| settlement_it(l.settlement))
                    .unwrap_or("IN_ATTESA_ACCREDITO"),
            ),
            Cell::Text(debug_list(&f.flow.flags)),
        ];
        for r in &f.flow.rows {
            let mut cells = head.clone();
            cells.extend([
                Cell::Int(i64::try_from(r.number).unwrap_or(i64::MAX)),
                Cell::text(&r.iuv),
                Cell::text(&r.iur),
                r.id_transfer
                    .map(|i| Cell::Int(i64::from(i)))
                    .unwrap_or(Cell::Empty),
                r.amount_cents.map(Cell::Cents).unwrap_or(Cell::Empty),
                Cell::text(r.status.code()),
                Cell::opt_date(r.date),
                Cell::Text(debug_list(&r.problems)),
            ]);
            rows.push(cells);
        }
    }
    Table {
        sheet: "Flussi",
        header: vec![
            "identificativoFlusso",
            "revisione",
            "dataRegolamento",
            "identificativoUnivocoRegolamento",
            "idPSP",
            "numeroTotalePagamenti",
            "importoTotalePagamenti",
            "importoAccreditato",
            "statoSquadratura",
            "segnalazioniFlusso",
            "riga",
            "IUV",
            "IUR",
            "indiceDatiSingoloPagamento",
            "importo",
            "esitoPagamento",
            "dataEsito",
            "segnalazioniRiga",
        ],
        rows,
    }
}

fn totals(report: &Report, flows: &[StoredFlow], period: Period) -> Table {
    use std::collections::BTreeMap;
    // (day, flow, label) → (count, cents)
    let mut groups: BTreeMap<(NaiveDate, String, &'static str), (i64, i64)> = BTreeMap::new();
    let mut add = |day: NaiveDate, flow: Option<&str>, label: Label, cents: i64| {
        if !period.contains(day) {
            return;
        }
        let e = groups
            .entry((day, flow.unwrap_or("").to_string(), label.code()))
            .or_insert((0, 0));
        e.0 += 1;
        e.1 += cents;
    };
    for p in &report.payments {
        add(
            rome_date(p.paid_at),
            p.flow_id.as_deref(),
            p.label,
            p.amount_cents,
        );
    }
    for r in &report.rows_without_receipt {
        let regulated = flows
            .iter()
            .find(|f| f.flow.header.flow_id == r.flow_id)
            .map(flow_day);
        let row_day = flows
            .iter()
            .find(|f| f.flow.header.flow_id == r.flow_id)
            .and_then(|f| f.flow.rows.iter().find(|x| x.number == r.row))
            .and_then(|x| x.date);
        if let Some(day) = row_day.or(regulated) {
            add(day, Some(&r.flow_id), r.label, r.amount_cents.unwrap_or(0));
        }
    }
    for c in &report.credits {
        if c.label != Label::TesNoIufOrIuv {
            continue;
        }
        if let Some(day) = c.credit.value_date.or(c.credit.booking_date) {
            add(day, c.flow_id.as_deref(), c.label, c.credit.amount_cents);
        }
    }
    let mut per_label: BTreeMap<&'static str, (i64, i64)> = BTreeMap::new();
    let mut rows = Vec::with_capacity(groups.len() + 8);
    for ((day, flow, label), (n, cents)) in groups {
        let t = per_label.entry(label).or_insert((0, 0));
        t.0 += n;
        t.1 += cents;
        rows.push(vec![
            Cell::Date(day),
            if flow.is_empty() {
                Cell::Empty
            } else {
                Cell::Text(flow)
            },
            Cell::text(label),
            Cell::Int(n),
            Cell::Cents(cents),
        ]);
    }
    for (label, (n, cents)) in per_label {
        rows.push(vec![
            Cell::text("TOTALE"),
            Cell::Empty,
            Cell::text(label),
            Cell::Int(n),
            Cell::Cents(cents),
        ]);
    }
    Table {
        sheet: "Riconciliazione",
        header: vec![
            "giorno",
            "identificativoFlusso",
            "etichetta",
            "numero",
            "importo",
        ],
        rows,
    }
}

/// `12,34` (decimal comma; no thousands separator).
pub fn euro_comma(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{},{:02}", c / 100, c % 100)
}

/// Writes `table` in `format`.
pub fn render(table: &Table, format: ExportFormat) -> Result<Vec<u8>, String> {
    match format {
        ExportFormat::Csv => render_csv(table),
        ExportFormat::Xlsx => render_xlsx(table),
    }
}

fn render_csv(table: &Table) -> Result<Vec<u8>, String> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(Vec::new());
    w.write_record(&table.header).map_err(|e| e.to_string())?;
    for row in &table.rows {
        w.write_record(row.iter().map(|c| match c {
            Cell::Text(s) => s.clone(),
            Cell::Cents(c) => euro_comma(*c),
            Cell::Int(n) => n.to_string(),
            Cell::Date(d) => d.format("%Y-%m-%d").to_string(),
            Cell::Empty => String::new(),
        }))
        .map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

fn render_xlsx(table: &Table) -> Result<Vec<u8>, String> {
    use chrono::Datelike;
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let err = |e: rust_xlsxwriter::XlsxError| e.to_string();
    let bold = Format::new().set_bold();
    let money = Format::new().set_num_format("#,##0.00");
    let day = Format::new().set_num_format("dd/mm/yyyy");
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name(table.sheet).map_err(err)?;
    let mut widths: Vec<usize> = table.header.iter().map(|h| h.len()).collect();
    for (c, h) in table.header.iter().enumerate() {
        let col = u16::try_from(c).map_err(|e| e.to_string())?;
        sheet
            .write_string_with_format(0, col, *h, &bold)
            .map_err(err)?;
    }
    for (r, row) in table.rows.iter().enumerate() {
        let rn = u32::try_from(r + 1).map_err(|e| e.to_string())?;
        for (c, cell) in row.iter().enumerate() {
            let col = u16::try_from(c).map_err(|e| e.to_string())?;
            let shown = match cell {
                Cell::Text(s) => {
                    sheet.write_string(rn, col, s).map_err(err)?;
                    s.chars().count()
                }
                Cell::Cents(cents) => {
                    // the edge: exact cents become the cell's decimal number
                    #[allow(clippy::cast_precision_loss)]
                    let euros = *cents as f64 / 100.0;
                    sheet
                        .write_number_with_format(rn, col, euros, &money)
                        .map_err(err)?;
                    euro_comma(*cents).len() + 2
                }
                Cell::Int(n) => {
                    #[allow(clippy::cast_precision_loss)]
                    let v = *n as f64;
                    sheet.write_number(rn, col, v).map_err(err)?;
                    n.to_string().len()
                }
                Cell::Date(d) => {
                    let x = ExcelDateTime::from_ymd(
                        u16::try_from(d.year()).map_err(|e| e.to_string())?,
                        u8::try_from(d.month()).map_err(|e| e.to_string())?,
                        u8::try_from(d.day()).map_err(|e| e.to_string())?,
                    )
                    .map_err(err)?;
                    sheet
                        .write_datetime_with_format(rn, col, &x, &day)
                        .map_err(err)?;
                    10
                }
                Cell::Empty => 0,
            };
            if let Some(w) = widths.get_mut(c) {
                *w = (*w).max(shown);
            }
        }
    }
    for (c, w) in widths.iter().enumerate() {
        let col = u16::try_from(c).map_err(|e| e.to_string())?;
        #[allow(clippy::cast_precision_loss)]
        let width = (*w).clamp(8, 60) as f64 + 2.0;
        sheet.set_column_width(col, width).map_err(err)?;
    }
    sheet.set_freeze_panes(1, 0).map_err(err)?;
    book.save_to_buffer().map_err(err)
}

/// The file name: `pagamenti-80001234568-2026-07-01-2026-07-31.xlsx`.
pub fn file_name(org: &str, kind: ExportKind, period: Period, format: ExportFormat) -> String {
    format!(
        "{}-{org}-{}-{}.{}",
        kind.file_stem(),
        period.from,
        period.to,
        format.as_str()
    )
}

/// Reads `org`'s reconciliation and flows from the store and writes the export: the file name
/// and its bytes. Blocking (call on a blocking thread).
pub fn export_from_store(
    store: &mpay_storage::Store,
    org: &str,
    kind: ExportKind,
    format: ExportFormat,
    period: Period,
) -> Result<(String, Vec<u8>), String> {
    let report = mpay_storage::reconciliation::reconcile(store, org).map_err(|e| e.to_string())?;
    let flows = store.reconciliation.flows(org).map_err(|e| e.to_string())?;
    let bytes = render(&table(&report, &flows, kind, period), format)?;
    Ok((file_name(org, kind, period, format), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_keep_their_cents_and_sign() {
        assert_eq!(euro_comma(0), "0,00");
        assert_eq!(euro_comma(5), "0,05");
        assert_eq!(euro_comma(123_456), "1234,56");
        assert_eq!(euro_comma(-1_029), "-10,29");
    }

    #[test]
    fn kinds_and_formats_parse_their_names_only() {
        for k in ExportKind::ALL {
            assert_eq!(ExportKind::parse(k.as_str()), Some(k));
        }
        for f in ExportFormat::ALL {
            assert_eq!(ExportFormat::parse(f.as_str()), Some(f));
        }
        assert_eq!(ExportKind::parse("receipts"), None);
        assert_eq!(ExportFormat::parse("xls"), None);
    }

    #[test]
    fn csv_uses_semicolons_and_decimal_comma() {
        let t = Table {
            sheet: "S",
            header: vec!["giorno", "importo", "nota"],
            rows: vec![vec![
                Cell::Date(NaiveDate::from_ymd_opt(2026, 7, 3).unwrap_or_default()),
                Cell::Cents(1_029),
                Cell::text("a;b"),
            ]],
        };
        let out = String::from_utf8(render(&t, ExportFormat::Csv).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(out, "giorno;importo;nota\n2026-07-03;10,29;\"a;b\"\n");
    }
}

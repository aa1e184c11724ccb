//! The FdR REST API for organizations (`fdr_organization.json`, SPEC §9.3): the list of
//! published flows, one flow's header (`SingleFlowResponse`) and its payment pages
//! (`PaginatedPaymentsResponse`). Amounts are JSON numbers: they are read from their text
//! (`120.0`, `0.29`), never through a float.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::xml::row_of;
use super::{business_day, cents_of, Flow, FlowError, FlowHeader, FlowRow, PayStatus, SenderKind};

/// Paging metadata of every list.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// Page size.
    pub page_size: u32,
    /// This page (1-based).
    pub page_number: u32,
    /// Pages in all.
    pub tot_page: u32,
}

/// One entry of `GET /organizations/{organizationId}/fdrs`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FlowListEntry {
    /// Flow id.
    pub fdr: String,
    /// PSP id.
    pub psp_id: String,
    /// Revision.
    pub revision: u32,
    /// When it was published (UTC instant, the `publishedGt` cursor).
    pub published: String,
    /// Flow date.
    #[serde(default)]
    pub flow_date: Option<String>,
}

/// `PaginatedFlowsResponse`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct FlowList {
    /// Paging.
    pub metadata: PageInfo,
    /// Flows in all.
    #[serde(default)]
    pub count: u64,
    /// This page's flows.
    #[serde(default)]
    pub data: Vec<FlowListEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sender {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    psp_id: Option<String>,
    #[serde(default)]
    psp_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receiver {
    #[serde(default)]
    organization_id: String,
    #[serde(default)]
    organization_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SingleFlow<'a> {
    fdr: String,
    #[serde(default)]
    revision: Option<u32>,
    #[serde(default)]
    fdr_date: String,
    #[serde(default)]
    regulation: String,
    #[serde(default)]
    regulation_date: Option<String>,
    #[serde(default)]
    bic_code_pouring_bank: Option<String>,
    sender: Sender,
    receiver: Receiver,
    #[serde(default)]
    tot_payments: Option<u64>,
    #[serde(borrow, default)]
    sum_payments: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payment<'a> {
    #[serde(default)]
    iuv: String,
    #[serde(default)]
    iur: String,
    #[serde(borrow, default)]
    id_transfer: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pay: Option<&'a RawValue>,
    #[serde(default)]
    pay_status: String,
    #[serde(default)]
    pay_date: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PaymentPage<'a> {
    metadata: PageInfo,
    #[serde(borrow, default)]
    data: Vec<Payment<'a>>,
}

fn unreadable(what: &str, e: impl std::fmt::Display) -> FlowError {
    FlowError::Unreadable(format!("{what}: {e}"))
}

/// Reads the list of flows (`PaginatedFlowsResponse`).
///
/// # Errors
/// [`FlowError::Unreadable`] when it is not that JSON.
pub fn decode_list(body: &[u8]) -> Result<FlowList, FlowError> {
    serde_json::from_slice(body).map_err(|e| unreadable("flow list", e))
}

/// Reads a flow's header (`SingleFlowResponse`).
///
/// # Errors
/// [`FlowError`] when it is not that JSON or has no flow id / receiver.
pub fn decode_header(body: &[u8]) -> Result<FlowHeader, FlowError> {
    let f: SingleFlow<'_> = serde_json::from_slice(body).map_err(|e| unreadable("flow", e))?;
    if f.fdr.trim().is_empty() {
        return Err(FlowError::Missing("fdr"));
    }
    if f.receiver.organization_id.trim().is_empty() {
        return Err(FlowError::Missing("receiver.organizationId"));
    }
    Ok(FlowHeader {
        flow_id: f.fdr,
        revision: f.revision,
        flow_date: f.fdr_date,
        regulation: f.regulation,
        regulation_date: f.regulation_date.as_deref().and_then(business_day),
        sender_kind: SenderKind::parse(&f.sender.kind),
        sender_id: f.sender.id,
        psp_id: f.sender.psp_id,
        sender_name: f.sender.psp_name,
        bic_pouring_bank: f.bic_code_pouring_bank,
        receiver_id: f.receiver.organization_id,
        receiver_name: f.receiver.organization_name,
        declared_count: f.tot_payments,
        declared_total_cents: f.sum_payments.and_then(|r| cents_of(r.get())),
    })
}

/// Reads one page of a flow's payments; `first_number` is the 1-based row number of its
/// first row. Returns the rows and the paging.
///
/// # Errors
/// [`FlowError::Unreadable`] when it is not that JSON; odd rows are problems on the rows.
pub fn decode_payments(
    body: &[u8],
    first_number: usize,
) -> Result<(Vec<FlowRow>, PageInfo), FlowError> {
    let page: PaymentPage<'_> =
        serde_json::from_slice(body).map_err(|e| unreadable("payments", e))?;
    let rows = page
        .data
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            row_of(
                first_number + i,
                p.iuv.trim().to_string(),
                p.iur.trim().to_string(),
                p.id_transfer.map(|r| r.get().trim_matches('"').to_string()),
                p.pay.map(|r| r.get().to_string()),
                PayStatus::from_rest(&p.pay_status),
                p.pay_date,
            )
        })
        .collect();
    Ok((rows, page.metadata))
}

/// A whole flow from its header and every page of payments, in order.
///
/// # Errors
/// [`FlowError`] as [`decode_header`] and [`decode_payments`].
pub fn decode_flow<'a>(
    header: &[u8],
    pages: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Flow, FlowError> {
    let header = decode_header(header)?;
    let mut rows = Vec::new();
    for page in pages {
        let (mut more, _) = decode_payments(page, rows.len() + 1)?;
        rows.append(&mut more);
    }
    Ok(Flow::new(header, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdr::{FlowFlag, RowProblem};

    const HEADER: &str = r#"{"status":"PUBLISHED","revision":2,"fdr":"2026-07-0388888888888-S0000001",
      "fdrDate":"2026-07-04T06:30:00Z","regulation":"SCTRN1","regulationDate":"2026-07-03",
      "sender":{"type":"BIC_CODE","id":"PSPXITXXXXX","pspId":"88888888888","pspName":"PSP"},
      "receiver":{"id":"77777777777","organizationId":"77777777777","organizationName":"Comune"},
      "totPayments":2,"sumPayments":130.29}"#;

    const PAGE: &str = r#"{"metadata":{"pageSize":1000,"pageNumber":1,"totPage":1},"count":2,"data":[
      {"index":1,"iuv":"12202600000000171","iur":"R1","idTransfer":1,"pay":120.0,"payStatus":"EXECUTED","payDate":"2026-07-02T23:15:30Z"},
      {"index":2,"iuv":"12202600000000272","iur":"R2","idTransfer":2,"pay":10.29,"payStatus":"STAND_IN","payDate":"2026-07-02T08:20:00Z"}]}"#;

    #[test]
    fn header_and_pages_make_a_flow_with_exact_amounts() {
        let f = decode_flow(HEADER.as_bytes(), [PAGE.as_bytes()]).unwrap();
        assert_eq!(f.header.revision, Some(2));
        assert_eq!(f.header.psp_id.as_deref(), Some("88888888888"));
        assert_eq!(f.header.declared_total_cents, Some(13_029));
        assert_eq!(f.rows[0].amount_cents, Some(12_000));
        assert_eq!(f.rows[1].amount_cents, Some(1_029));
        assert_eq!(f.rows[1].id_transfer, Some(2));
        // the business day is the written one, not moved by the UTC offset
        assert_eq!(f.rows[0].date.unwrap().to_string(), "2026-07-02");
        assert_eq!(f.flags, vec![FlowFlag::StandInRows(1)]);
    }

    #[test]
    fn odd_payments_are_problems_not_errors() {
        let page = PAGE
            .replace("\"pay\":120.0", "\"pay\":1.234")
            .replace("\"idTransfer\":2", "\"idTransfer\":9")
            .replace("STAND_IN", "SOMETHING_NEW");
        let (rows, info) = decode_payments(page.as_bytes(), 1001).unwrap();
        assert_eq!(info.tot_page, 1);
        assert_eq!(rows[0].number, 1001);
        assert_eq!(
            rows[0].problems,
            vec![RowProblem::BadAmount("1.234".into())]
        );
        assert!(rows[1].problems.contains(&RowProblem::BadIndex("9".into())));
        assert!(rows[1]
            .problems
            .contains(&RowProblem::UnknownStatus("SOMETHING_NEW".into())));
    }

    #[test]
    fn the_list_is_read_and_junk_is_an_error() {
        let list = decode_list(
            br#"{"metadata":{"pageSize":1000,"pageNumber":1,"totPage":3},"count":1,
                "data":[{"fdr":"F1","pspId":"P","revision":1,"published":"2026-07-04T06:31:00Z","flowDate":"2026-07-04T06:30:00Z"}]}"#,
        )
        .unwrap();
        assert_eq!(list.metadata.tot_page, 3);
        assert_eq!(list.data[0].fdr, "F1");
        assert!(decode_header(b"{}").is_err());
        assert!(matches!(
            decode_header(
                HEADER
                    .replace(
                        "\"77777777777\",\"organizationName",
                        "\"\",\"organizationName"
                    )
                    .as_bytes()
            ),
            Err(FlowError::Missing(_))
        ));
    }
}

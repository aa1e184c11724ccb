//! Wire formats. `pafornode`: the pagoPA station SOAP messages (SANP 3.x `paForNode.xsd`):
//! a namespace-aware XML reader ([`xml`]), a validator driven by the XSD facts ([`schema`]),
//! typed requests/responses, and the fault table ([`faults`]). `receipt_json`: a receipt as JSON
//! (pagoPA names, cents); `ente`: what an Ente receives about its payments (signed webhook,
//! legacy `notificaPagamento`); `biz_events`: pagoPA's biz-events receipt (receipt recovery) read
//! into the receipt paSendRT stores.

pub mod biz_events;
pub mod ente;
pub mod ente_flow;
pub mod faults;
pub mod pafornode;
pub mod receipt_json;
pub mod schema;
pub mod xml;

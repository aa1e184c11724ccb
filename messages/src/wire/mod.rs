//! Wire formats. `pafornode`: the pagoPA station SOAP messages (SANP 3.x `paForNode.xsd`):
//! a namespace-aware XML reader ([`xml`]), a validator driven by the XSD facts ([`schema`]),
//! typed requests/responses, and the fault table ([`faults`]).

pub mod faults;
pub mod pafornode;
pub mod schema;
pub mod xml;

//! The station's fault codes (SPEC §5.7, ctFaultBean) and their canonical fault strings.
//! One table: every internal refusal maps to exactly one of these.

/// A `PAA_*` fault code answered by the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultCode {
    /// Not XML / not SOAP / unknown operation.
    SintassiExtraXsd,
    /// XML that the XSD rejects.
    SintassiXsd,
    /// `idPA` / `qrCode.fiscalCode` not served (on this station).
    IdDominioErrato,
    /// `idBrokerPA` is not ours.
    IdIntermediarioErrato,
    /// `idStation` is not ours or not enabled for the organization.
    StazioneIntErrata,
    /// No payable position for the notice.
    PagamentoSconosciuto,
    /// Already paid.
    PagamentoDuplicato,
    /// A payment is known to be in progress.
    PagamentoInCorso,
    /// Expired (`switchToExpired`).
    PagamentoScaduto,
    /// Cancelled.
    PagamentoAnnullato,
    /// Any other semantic inconsistency.
    Semantica,
    /// A different receipt for an already paid notice.
    ReceiptDuplicata,
    /// Internal failure.
    SystemError,
}

impl FaultCode {
    /// The wire code, e.g. `PAA_PAGAMENTO_SCONOSCIUTO`.
    pub fn code(self) -> &'static str {
        match self {
            Self::SintassiExtraXsd => "PAA_SINTASSI_EXTRAXSD",
            Self::SintassiXsd => "PAA_SINTASSI_XSD",
            Self::IdDominioErrato => "PAA_ID_DOMINIO_ERRATO",
            Self::IdIntermediarioErrato => "PAA_ID_INTERMEDIARIO_ERRATO",
            Self::StazioneIntErrata => "PAA_STAZIONE_INT_ERRATA",
            Self::PagamentoSconosciuto => "PAA_PAGAMENTO_SCONOSCIUTO",
            Self::PagamentoDuplicato => "PAA_PAGAMENTO_DUPLICATO",
            Self::PagamentoInCorso => "PAA_PAGAMENTO_IN_CORSO",
            Self::PagamentoScaduto => "PAA_PAGAMENTO_SCADUTO",
            Self::PagamentoAnnullato => "PAA_PAGAMENTO_ANNULLATO",
            Self::Semantica => "PAA_SEMANTICA",
            Self::ReceiptDuplicata => "PAA_RECEIPT_DUPLICATA",
            Self::SystemError => "PAA_SYSTEM_ERROR",
        }
    }

    /// The canonical fault string (SPEC §5.7; 1:1 with the code).
    pub fn fault_string(self) -> &'static str {
        match self {
            Self::SintassiExtraXsd => "Errore di sintassi extra XSD",
            Self::SintassiXsd => "Errore di sintassi XSD",
            Self::IdDominioErrato => "La PAA non corrisponde al Dominio indicato",
            Self::IdIntermediarioErrato => "Identificativo intermediario non corrispondente",
            Self::StazioneIntErrata => "Stazione intermediario non corrispondente",
            Self::PagamentoSconosciuto => {
                "Pagamento in attesa risulta sconosciuto all’Ente Creditore"
            }
            Self::PagamentoDuplicato => "Pagamento in attesa risulta concluso all’Ente Creditore",
            Self::PagamentoInCorso => "Pagamento in attesa risulta in corso all’Ente Creditore",
            Self::PagamentoScaduto => "Pagamento in attesa risulta scaduto all’Ente Creditore",
            Self::PagamentoAnnullato => "Pagamento in attesa risulta annullato all’Ente Creditore",
            Self::Semantica => "Errore semantico",
            Self::ReceiptDuplicata => "Ricevuta duplicata",
            Self::SystemError => "Errore generico",
        }
    }

    /// Every code (for exhaustive tests and documentation).
    pub const ALL: [FaultCode; 13] = [
        Self::SintassiExtraXsd,
        Self::SintassiXsd,
        Self::IdDominioErrato,
        Self::IdIntermediarioErrato,
        Self::StazioneIntErrata,
        Self::PagamentoSconosciuto,
        Self::PagamentoDuplicato,
        Self::PagamentoInCorso,
        Self::PagamentoScaduto,
        Self::PagamentoAnnullato,
        Self::Semantica,
        Self::ReceiptDuplicata,
        Self::SystemError,
    ];
}

/// A fault to answer: code, the organization id (`id`) and a free description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Code.
    pub code: FaultCode,
    /// `id`: the organization's fiscal code when known, else the broker/station id.
    pub id: String,
    /// Free text, no personal data.
    pub description: String,
}

impl From<crate::domain::NotPayable> for FaultCode {
    /// The station's answer when a notice is not payable (SPEC §5.7 reference mapping): the
    /// one table from [`crate::domain::NotPayable`] to the Node's fault codes.
    fn from(reason: crate::domain::NotPayable) -> Self {
        use crate::domain::NotPayable as N;
        match reason {
            N::UnknownNotice | N::NotPublished | N::NotYetValid => Self::PagamentoSconosciuto,
            N::Cancelled => Self::PagamentoAnnullato,
            N::Expired | N::PastDueDate => Self::PagamentoScaduto,
            N::PositionPaid | N::InstallmentPaid | N::NoticePaid => Self::PagamentoDuplicato,
        }
    }
}

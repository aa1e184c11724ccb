//! A CSV row seen through its header: the canonical column names, the binding of a header's
//! columns to them, and the row view the record mapping reads (used by `reader` and `record`).

use std::collections::HashMap;

use super::FeedVersion;

/// The canonical column names (2.0 Italian names; 1.4 secondary columns keep their names).
pub(crate) mod col {
    pub const IUPD: &str = "IUPD";
    pub const POS_DESCRIPTION: &str = "descrizionePosizioneDebitoria";
    pub const VALIDITY_DATE: &str = "dataValidita";
    pub const MULTI_DEBTOR: &str = "coobbligato";
    pub const NOTIFICATION_DATE: &str = "dataNotifica";
    pub const OPTION_INDEX: &str = "indiceOpzionePagamento";
    pub const OPTION_TYPE: &str = "tipoOpzionePagamento";
    pub const OPTION_DESCRIPTION: &str = "descrizioneOpzionePagamento";
    pub const IUD: &str = "IUD";
    pub const IUV: &str = "codIuv";
    pub const NAV: &str = "numeroAvviso";
    pub const ENTITY_TYPE: &str = "tipoIdentificativoUnivoco";
    pub const FISCAL_CODE: &str = "codiceIdentificativoUnivoco";
    pub const FULL_NAME: &str = "anagraficaPagatore";
    pub const ADDRESS: &str = "indirizzoPagatore";
    pub const CIVIC: &str = "civicoPagatore";
    pub const POSTAL_CODE: &str = "capPagatore";
    pub const LOCATION: &str = "localitaPagatore";
    pub const PROVINCE: &str = "provinciaPagatore";
    pub const NATION: &str = "nazionePagatore";
    pub const EMAIL: &str = "mailPagatore";
    pub const DUE_DATE: &str = "dataEsecuzionePagamento";
    pub const AMOUNT: &str = "importoDovuto";
    pub const PA_FEE: &str = "commissioneCaricoPa";
    pub const TIPO_DOVUTO: &str = "tipoDovuto";
    pub const TIPO_VERSAMENTO: &str = "tipoVersamento";
    pub const CAUSALE: &str = "causaleVersamento";
    pub const DATI_RISCOSSIONE: &str = "datiSpecificiRiscossione";
    pub const GENERATE_IUV: &str = "flgGeneraIuv";
    pub const PU_PAYMENT: &str = "flagPagamentoPu";
    pub const BILANCIO: &str = "bilancio";
    pub const MULTI_BENEFICIARY: &str = "flagMultiBeneficiario";
    pub const BENEFICIARIES: &str = "numeroBeneficiari";
    pub const EXEC_CONFIG: &str = "configurazioniEsecuzione";
    pub const ACTION: &str = "azione";
    pub const DRAFT: &str = "draft";
    pub const SEC_CF: &str = "codiceFiscaleEnteSecondario";
    pub const SEC_NAME: &str = "denominazioneEnteSecondario";
    pub const SEC_IBAN: &str = "ibanAccreditoEnteSecondario";
    pub const SEC_ADDRESS: &str = "indirizzoEnteSecondario";
    pub const SEC_CIVIC: &str = "civicoEnteSecondario";
    pub const SEC_CAP: &str = "capEnteSecondario";
    pub const SEC_LOCATION: &str = "localitaEnteSecondario";
    pub const SEC_PROVINCE: &str = "provinciaEnteSecondario";
    pub const SEC_NATION: &str = "nazioneEnteSecondario";
    pub const SEC_DATI: &str = "datiSpecificiRiscossioneEnteSecondario";
    pub const SEC_CAUSALE: &str = "causaleVersamentoEnteSecondario";
    pub const SEC_AMOUNT: &str = "importoVersamentoEnteSecondario";
    /// Transfer group column stems (`<stem>_N`), FORMAT.md §1.3.
    pub const T_CF: &str = "codiceFiscaleEnte";
    pub const T_NAME: &str = "denominazioneEnte";
    pub const T_IBAN: &str = "ibanAccreditoEnte";
    pub const T_CAUSALE: &str = "causaleVersamentoEnte";
    pub const T_AMOUNT: &str = "importoVersamentoEnte";
    pub const T_CATEGORY: &str = "codiceTassonomiaEnte";
}

/// Canonical column name → index in the row.
#[derive(Debug, Clone, Default)]
pub(crate) struct Binding {
    pub(super) map: HashMap<String, usize>,
    /// Number of columns of the header.
    pub width: usize,
}

impl Binding {
    pub(super) fn index(&self, canonical: &str) -> Option<usize> {
        self.map.get(canonical).copied()
    }
}

/// A row seen through a binding.
pub(crate) struct RowView<'a> {
    pub fields: &'a [String],
    pub binding: &'a Binding,
    pub version: FeedVersion,
}

impl<'a> RowView<'a> {
    /// The trimmed value of a canonical column, `None` when absent or empty.
    pub fn get(&self, canonical: &str) -> Option<&'a str> {
        let i = self.binding.index(canonical)?;
        self.fields
            .get(i)
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    }
}

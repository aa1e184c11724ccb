//! Every printed label, in Italian and German. A bilingual notice prints both (`it / de`).

use crate::model::Language;

/// A label in both languages.
pub(crate) struct L(pub &'static str, pub &'static str);

pub(crate) fn t(lang: Language, l: &L) -> String {
    match lang {
        Language::It => l.0.to_owned(),
        Language::ItDe => format!("{} / {}", l.0, l.1),
    }
}

pub(crate) const TITLE: L = L("AVVISO DI PAGAMENTO", "ZAHLUNGSMITTEILUNG");
pub(crate) const EC: L = L("ENTE CREDITORE", "GLÄUBIGERKÖRPERSCHAFT");
pub(crate) const EC_CF: L = L(
    "Codice fiscale Ente creditore",
    "Steuernummer der Körperschaft",
);
pub(crate) const DEBTOR: L = L("DESTINATARIO DELL'AVVISO", "EMPFÄNGER DER MITTEILUNG");
pub(crate) const DEBTOR_CF: L = L("Codice fiscale", "Steuernummer");
pub(crate) const SUBJECT: L = L("OGGETTO DEL PAGAMENTO", "ZAHLUNGSGRUND");
pub(crate) const HOW_MUCH: L = L("QUANTO E QUANDO PAGARE?", "WIE VIEL UND WANN ZAHLEN?");
pub(crate) const WHERE: L = L("DOVE PAGARE?", "WO ZAHLEN?");
pub(crate) const WHERE_TEXT: L = L(
    "Sul sito o con l'app della tua banca o di altri canali di pagamento abilitati a pagoPA, con l'app IO, presso banche, sportelli ATM, punti vendita e Uffici Postali. Inquadra il codice QR o usa il codice avviso e il codice fiscale dell'Ente.",
    "Auf der Website oder mit der App Ihrer Bank oder anderer für pagoPA zugelassener Zahlungskanäle, mit der App IO, bei Banken, Geldautomaten, Verkaufsstellen und Postämtern. Scannen Sie den QR-Code oder verwenden Sie den Zahlungscode und die Steuernummer der Körperschaft.",
);
pub(crate) const BY: L = L("entro il", "bis zum");
pub(crate) const SINGLE: L = L("RATA UNICA", "EINMALZAHLUNG");
pub(crate) const INSTALLMENT: L = L("RATA", "RATE");
pub(crate) const OF: L = L("DI", "VON");
pub(crate) const PLAN_TEXT: L = L(
    "Puoi pagare in un'unica soluzione oppure a rate, con i codici delle singole rate.",
    "Sie können in einer Summe oder in Raten zahlen, mit den Codes der einzelnen Raten.",
);
pub(crate) const PLAN_ONLY_TEXT: L = L(
    "Il pagamento è rateizzato: paga ogni rata entro la sua scadenza.",
    "Die Zahlung erfolgt in Raten: zahlen Sie jede Rate bis zu ihrer Fälligkeit.",
);
pub(crate) const NOTICE_CODE: L = L("Codice avviso", "Zahlungscode");
pub(crate) const CBILL: L = L("Codice CBILL", "CBILL-Code");
pub(crate) const POSTAL: L = L("BOLLETTINO POSTALE PA", "POSTZAHLSCHEIN PA");
pub(crate) const POSTAL_ACCOUNT: L = L("sul C/C n.", "auf Konto Nr.");
pub(crate) const HOLDER: L = L("Intestato a", "Inhaber");
pub(crate) const AMOUNT: L = L("Importo", "Betrag");
pub(crate) const CAUSALE: L = L("Oggetto del pagamento", "Zahlungsgrund");
pub(crate) const TYPE: L = L("Tipo", "Typ");
pub(crate) const RECIPIENT: L = L("Destinatario", "Empfänger");
pub(crate) const CONTINUED: L = L("segue", "Fortsetzung");

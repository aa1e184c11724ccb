//! Payment documents as PDF: the pagoPA payment notice (avviso: QR code per option, the Poste
//! bollettino's Data Matrix) and the payment receipt (ricevuta, with a QR code to its public
//! verification page). The only crate of the workspace that compiles the PDF engine (krilla);
//! callers map their records to the plain input structs of [`model`]. Rendering is CPU work:
//! call it off the async threads.
//!
//! Fonts: DejaVu Sans and Sans Mono, embedded at build time from the `dejavu` crate.

mod labels;
mod layout;
pub mod model;
mod notice;
pub mod payload;
mod receipt;

pub use model::{
    Language, NoticeInput, NoticeOption, OptionKind, Party, ReceiptInput, ReceiptTransfer,
    StampInfo,
};

use krilla::metadata::Metadata;
use krilla::Document;

/// Why a document could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not an 18-digit notice number.
    #[error("not an 18-digit notice number: {0:?}")]
    InvalidNoticeNumber(String),
    /// Not an 11-digit organization fiscal code.
    #[error("not an 11-digit organization fiscal code: {0:?}")]
    InvalidOrganization(String),
    /// Amount not positive, or too large for its field.
    #[error("amount out of range: {0} cents")]
    InvalidAmount(i64),
    /// A postal account that is not 1..12 digits.
    #[error("not a postal account number (1 to 12 digits): {0:?}")]
    InvalidPostalAccount(String),
    /// A notice with no option to pay.
    #[error("a notice needs at least one payment option")]
    NoOptions,
    /// The PDF engine or a code generator failed.
    #[error("rendering failed: {0}")]
    Layout(String),
}

fn new_document(title: &str) -> Document {
    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new()
            .title(title.to_owned())
            .creator("mpay".to_owned())
            .producer("mpay-documents (krilla)".to_owned()),
    );
    doc
}

fn finish(doc: Document) -> Result<Vec<u8>, DocumentError> {
    doc.finish()
        .map_err(|e| DocumentError::Layout(format!("{e:?}")))
}

/// One notice as a PDF.
pub fn render_notice(notice: &NoticeInput) -> Result<Vec<u8>, DocumentError> {
    let mut doc = new_document("Avviso di pagamento");
    notice::draw(&mut doc, notice)?;
    finish(doc)
}

/// A receipt as a PDF.
pub fn render_receipt(receipt: &ReceiptInput) -> Result<Vec<u8>, DocumentError> {
    let mut doc = new_document("Ricevuta di pagamento");
    receipt::draw(&mut doc, receipt)?;
    finish(doc)
}

/// Many notices into one PDF (mass printing): each starts on a new page, in the order given.
pub struct MergedNotices {
    doc: Document,
    count: usize,
}

impl Default for MergedNotices {
    fn default() -> Self {
        Self::new()
    }
}

impl MergedNotices {
    /// An empty document.
    pub fn new() -> Self {
        MergedNotices {
            doc: new_document("Avvisi di pagamento"),
            count: 0,
        }
    }

    /// Appends a notice; a notice that cannot be rendered leaves the document as it was.
    pub fn add(&mut self, notice: &NoticeInput) -> Result<(), DocumentError> {
        notice::validate(notice)?;
        notice::draw(&mut self.doc, notice)?;
        self.count += 1;
        Ok(())
    }

    /// How many notices were added.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True before the first notice.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The PDF.
    pub fn finish(self) -> Result<Vec<u8>, DocumentError> {
        finish(self.doc)
    }
}

/// Many notices into one PDF.
pub fn render_notices<'a>(
    notices: impl IntoIterator<Item = &'a NoticeInput>,
) -> Result<Vec<u8>, DocumentError> {
    let mut merged = MergedNotices::new();
    for n in notices {
        merged.add(n)?;
    }
    merged.finish()
}

/// The QR codes of a notice alone, without a PDF (the benchmark's baseline): how many modules
/// the symbols have in total.
pub fn qr_codes_only(notice: &NoticeInput) -> Result<usize, DocumentError> {
    let mut modules = 0;
    for o in &notice.options {
        let payload = payload::qr_payload(&o.nav, &notice.ec_fiscal_code, o.amount_cents)?;
        let code =
            qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::M)
                .map_err(|e| DocumentError::Layout(format!("QR code: {e}")))?;
        modules += code.width() * code.width();
    }
    Ok(modules)
}

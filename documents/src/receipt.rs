//! The receipt: outcome, parties, identifiers (the receipt id exactly as pagoPA gave it), the
//! transfers with their beneficiaries, stamps, and a QR code linking to the public verification
//! page.

use chrono_tz::Europe::Rome;
use krilla::page::PageSettings;
use krilla::surface::Surface;
use krilla::Document;

use crate::layout::{self, fonts, Block, Style, BLUE, GREY, LIGHT, MARGIN, PAGE_H, PAGE_W};
use crate::model::ReceiptInput;
use crate::payload::{format_euro, format_notice_number};
use crate::DocumentError;

const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;
const QR: f32 = 90.0;
const PAD: f32 = 6.0;

/// Appends the receipt's page(s) to `doc`.
pub(crate) fn draw(doc: &mut Document, r: &ReceiptInput) -> Result<(), DocumentError> {
    let f = fonts()?;
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
        .ok_or_else(|| DocumentError::Layout("page size".into()))?;
    let mut page = doc.start_page_with(settings.clone());
    let mut s = page.surface();

    // band
    layout::rect_fill(&mut s, MARGIN, MARGIN, CONTENT_W, 34.0, BLUE);
    let white = Style::new(&f.bold, 15.0).color((255, 255, 255));
    layout::text(
        &mut s,
        MARGIN + 10.0,
        MARGIN + 22.0,
        white,
        "RICEVUTA DI PAGAMENTO",
    );
    layout::text_right(
        &mut s,
        MARGIN + CONTENT_W - 10.0,
        MARGIN + 22.0,
        Style::new(&f.bold, 13.0).color((255, 255, 255)),
        "pagoPA",
    );
    let top = MARGIN + 34.0 + 12.0;

    // verification QR on the right
    layout::qr(&mut s, MARGIN + CONTENT_W - QR, top, QR, &r.verify_url)?;
    let cap = Block::fit(
        Style::new(&f.regular, 6.5).color(GREY),
        &format!("Verifica la ricevuta: {}", r.verify_url),
        QR + 10.0,
        6,
        5.0,
    );
    cap.draw(&mut s, MARGIN + CONTENT_W - QR - 5.0, top + QR + 2.0);
    let qr_bottom = top + QR + 2.0 + cap.height();

    // key / value rows, beside the QR then full width
    let paid_at = r
        .paid_at
        .with_timezone(&Rome)
        .format("%d/%m/%Y %H:%M:%S")
        .to_string();
    let party = |p: &crate::model::Party| {
        if p.fiscal_code.trim().is_empty() {
            p.name.clone()
        } else {
            format!("{} — {}", p.name, p.fiscal_code)
        }
    };
    let mut rows: Vec<(&str, String, bool)> = vec![
        ("Esito", r.outcome.clone(), false),
        (
            "Data e ora del pagamento",
            format!("{paid_at} (ora italiana)"),
            false,
        ),
        ("Importo pagato", format_euro(r.total_cents), false),
    ];
    if let Some(fee) = r.fee_cents {
        rows.push(("Commissione", format_euro(fee), false));
    }
    rows.push((
        "Ente creditore",
        format!("{} — {}", r.ec_name, r.ec_fiscal_code),
        false,
    ));
    rows.push(("Debitore", party(&r.debtor), false));
    if let Some(p) = &r.payer {
        rows.push(("Pagatore", party(p), false));
    }
    rows.push(("Oggetto", r.description.clone(), false));
    rows.push(("Codice avviso", format_notice_number(&r.nav), true));
    rows.push(("IUV", r.iuv.clone(), true));
    rows.push(("Identificativo ricevuta", r.receipt_id.clone(), true));
    rows.push(("PSP", r.psp.clone(), false));
    rows.push(("Canale", r.channel.clone(), false));

    let label_w = 120.0;
    let mut y = top;
    for (label, value, mono) in &rows {
        let value_w = if y < qr_bottom {
            CONTENT_W - label_w - QR - 20.0
        } else {
            CONTENT_W - label_w
        };
        let vstyle = if *mono {
            Style::new(&f.mono, 9.0)
        } else {
            Style::new(&f.regular, 9.0)
        };
        let vb = Block::fit(vstyle, value, value_w, 2, 7.0);
        let lbk = Block::fit(
            Style::new(&f.regular, 8.0).color(GREY),
            label,
            label_w - 6.0,
            2,
            6.0,
        );
        lbk.draw(&mut s, MARGIN, y);
        let end = vb.draw(&mut s, MARGIN + label_w, y).max(y + lbk.height());
        y = end + 3.0;
    }
    y = y.max(qr_bottom) + 10.0;

    // transfers
    y = section_title(&mut s, y, "DETTAGLIO DEI VERSAMENTI");
    let cols = [22.0, 150.0, CONTENT_W - 22.0 - 150.0 - 80.0, 80.0];
    let head = ["#", "Beneficiario", "Causale", "Importo"];
    let hstyle = Style::new(&f.bold, 8.0);
    layout::rect_fill(&mut s, MARGIN, y, CONTENT_W, 16.0, LIGHT);
    let mut x = MARGIN;
    for (i, (w, h)) in cols.iter().zip(head).enumerate() {
        if i == 3 {
            layout::text_right(&mut s, x + w - PAD, y + 11.5, hstyle, h);
        } else {
            layout::text(&mut s, x + PAD, y + 11.5, hstyle, h);
        }
        x += w;
    }
    y += 18.0;
    let body = Style::new(&f.regular, 8.5);
    for (i, tr) in r.transfers.iter().enumerate() {
        let beneficiary = match &tr.beneficiary_name {
            Some(n) if !n.trim().is_empty() => format!("{n}\n{}", tr.beneficiary_fiscal_code),
            _ => tr.beneficiary_fiscal_code.clone(),
        };
        let beneficiary = match &tr.iban {
            Some(iban) if !iban.trim().is_empty() => format!("{beneficiary}\n{iban}"),
            _ => beneficiary,
        };
        let bb = Block::fit(body, &beneficiary, cols[1] - 2.0 * PAD, 4, 6.5);
        let cb = Block::fit(
            body,
            &tr.remittance_information,
            cols[2] - 2.0 * PAD,
            4,
            6.5,
        );
        let h = bb.height().max(cb.height()) + 4.0;
        if y + h > PAGE_H - MARGIN {
            s.finish();
            page.finish();
            page = doc.start_page_with(settings.clone());
            s = page.surface();
            y = MARGIN;
        }
        let n = (i + 1).to_string();
        layout::text(&mut s, MARGIN + PAD, y + body.leading() * 0.78, body, &n);
        bb.draw(&mut s, MARGIN + cols[0] + PAD, y);
        cb.draw(&mut s, MARGIN + cols[0] + cols[1] + PAD, y);
        layout::text_right(
            &mut s,
            MARGIN + CONTENT_W - PAD,
            y + body.leading() * 0.78,
            body,
            &format_euro(tr.amount_cents),
        );
        y += h;
        layout::hline(&mut s, MARGIN, y, CONTENT_W, LIGHT);
        y += 3.0;
    }

    // stamps
    for stamp in &r.stamps {
        let lines = [
            ("IUBD", stamp.iubd.clone()),
            ("Importo", format_euro(stamp.amount_cents)),
            ("Data di acquisto", stamp.purchased_at.clone()),
            ("Impronta del documento", stamp.document_digest.clone()),
        ];
        let need = 18.0 + 4.0 * 14.0;
        if y + need > PAGE_H - MARGIN {
            s.finish();
            page.finish();
            page = doc.start_page_with(settings.clone());
            s = page.surface();
            y = MARGIN;
        }
        y = section_title(&mut s, y + 6.0, "MARCA DA BOLLO DIGITALE");
        for (label, value) in lines {
            let lbk = Block::fit(
                Style::new(&f.regular, 8.0).color(GREY),
                label,
                label_w - 6.0,
                2,
                6.0,
            );
            let vb = Block::fit(
                Style::new(&f.mono, 8.5),
                &value,
                CONTENT_W - label_w,
                2,
                6.5,
            );
            lbk.draw(&mut s, MARGIN, y);
            y = vb.draw(&mut s, MARGIN + label_w, y).max(y + lbk.height()) + 2.0;
        }
    }
    s.finish();
    page.finish();
    Ok(())
}

fn section_title(s: &mut Surface<'_>, y: f32, title: &str) -> f32 {
    let Ok(f) = fonts() else { return y };
    layout::text(
        s,
        MARGIN,
        y + 10.0,
        Style::new(&f.bold, 9.0).color(BLUE),
        title,
    );
    layout::hline(s, MARGIN, y + 13.0, CONTENT_W, BLUE);
    y + 18.0
}

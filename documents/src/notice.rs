//! The payment notice: header, debtor, subject, then one box per option (single solution and
//! installments, each with its own QR code) and, when the money goes to a postal account, the
//! Poste bollettino with its Data Matrix. Boxes grow with their text; a box that does not fit
//! the page starts the next one.

use krilla::page::PageSettings;
use krilla::surface::Surface;
use krilla::Document;

use crate::labels::{self as lb, t};
use crate::layout::{self, fonts, Block, Style, BLUE, GREY, LIGHT, MARGIN, PAGE_H, PAGE_W};
use crate::model::{Language, NoticeInput, NoticeOption, OptionKind};
use crate::payload::{
    datamatrix_payload, format_euro, format_notice_number, qr_payload, PostalFields,
};
use crate::DocumentError;

const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;
const CODE: f32 = 96.0;
const PAD: f32 = 10.0;

/// Checks a notice before anything is drawn (so a merged document never holds half a notice).
pub(crate) fn validate(n: &NoticeInput) -> Result<(), DocumentError> {
    if n.options.is_empty() {
        return Err(DocumentError::NoOptions);
    }
    crate::payload::check_ec(&n.ec_fiscal_code)?;
    for o in &n.options {
        qr_payload(&o.nav, &n.ec_fiscal_code, o.amount_cents)?;
        if let Some(account) = &o.postal_account {
            datamatrix_payload(&postal_fields(n, o, account))?;
        }
    }
    Ok(())
}

fn postal_fields<'a>(
    n: &'a NoticeInput,
    o: &'a NoticeOption,
    account: &'a str,
) -> PostalFields<'a> {
    PostalFields {
        nav: &o.nav,
        postal_account: account,
        amount_cents: o.amount_cents,
        ec_fiscal_code: &n.ec_fiscal_code,
        debtor_fiscal_code: &n.debtor.fiscal_code,
        debtor_name: &n.debtor.name,
        subject: if o.description.trim().is_empty() {
            &n.subject
        } else {
            &o.description
        },
    }
}

/// Appends the notice's pages to `doc`.
pub(crate) fn draw(doc: &mut Document, n: &NoticeInput) -> Result<(), DocumentError> {
    validate(n)?;
    let f = fonts()?;
    let lang = n.language;
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
        .ok_or_else(|| DocumentError::Layout("page size".into()))?;
    let mut page = doc.start_page_with(settings.clone());
    let mut surface = page.surface();
    let mut y = header(&mut surface, n, lang)?;

    // what and how much
    let summary = summary_blocks(n, lang, f);
    let summary_h = summary.iter().map(|b| b.height()).sum::<f32>() + 2.0 * PAD;
    layout::rect_fill(&mut surface, MARGIN, y, CONTENT_W, summary_h, LIGHT);
    let mut sy = y + PAD;
    for b in &summary {
        sy = b.draw(&mut surface, MARGIN + PAD, sy);
    }
    y += summary_h + 12.0;

    // one box per option (+ its bollettino)
    let mut boxes: Vec<DrawFn<'_>> = Vec::new();
    let mut heights = Vec::new();
    for o in &n.options {
        let (h, draw) = option_box(n, o, lang)?;
        heights.push(h);
        boxes.push(draw);
        if let Some(account) = &o.postal_account {
            let (h, draw) = postal_box(n, o, account, lang)?;
            heights.push(h);
            boxes.push(draw);
        }
    }
    for (h, draw) in heights.iter().zip(boxes.iter()) {
        if y + h > PAGE_H - MARGIN {
            surface.finish();
            page.finish();
            page = doc.start_page_with(settings.clone());
            surface = page.surface();
            y = continuation_header(&mut surface, n, lang);
        }
        y = draw(&mut surface, y)? + 10.0;
    }
    surface.finish();
    page.finish();
    Ok(())
}

fn header(s: &mut Surface<'_>, n: &NoticeInput, lang: Language) -> Result<f32, DocumentError> {
    let f = fonts()?;
    let band_h = 34.0;
    layout::rect_fill(s, MARGIN, MARGIN, CONTENT_W, band_h, BLUE);
    let title = Style::new(&f.bold, 15.0).color((255, 255, 255));
    let title_block = Block::fit(title, &t(lang, &lb::TITLE), CONTENT_W - 90.0, 1, 9.0);
    layout::text(
        s,
        MARGIN + PAD,
        MARGIN + 22.0,
        title_block.style,
        title_block.lines.first().map_or("", String::as_str),
    );
    layout::text_right(
        s,
        MARGIN + CONTENT_W - PAD,
        MARGIN + 22.0,
        Style::new(&f.bold, 13.0).color((255, 255, 255)),
        "pagoPA",
    );
    let mut y = MARGIN + band_h + 12.0;

    let col_w = (CONTENT_W - 20.0) / 2.0;
    let small = Style::new(&f.regular, 7.0).color(GREY);
    let value = Style::new(&f.regular, 9.0);
    let name = Style::new(&f.bold, 11.0);
    let mut left = vec![
        Block::fit(small, &t(lang, &lb::EC), col_w, 1, 6.0),
        Block::fit(name, &n.ec_name, col_w, 2, 8.0),
    ];
    if let Some(office) = n.ec_office.as_deref().filter(|o| !o.trim().is_empty()) {
        left.push(Block::fit(value, office, col_w, 2, 7.0));
    }
    left.push(Block::fit(small, &t(lang, &lb::EC_CF), col_w, 1, 6.0));
    left.push(Block::fit(value, &n.ec_fiscal_code, col_w, 1, 7.0));
    let mut right = vec![
        Block::fit(small, &t(lang, &lb::DEBTOR), col_w, 1, 6.0),
        Block::fit(name, &n.debtor.name, col_w, 2, 8.0),
        Block::fit(small, &t(lang, &lb::DEBTOR_CF), col_w, 1, 6.0),
        Block::fit(value, &n.debtor.fiscal_code, col_w, 1, 7.0),
    ];
    if let Some(addr) = n.debtor.address.as_deref().filter(|a| !a.trim().is_empty()) {
        right.push(Block::fit(value, addr, col_w, 2, 7.0));
    }
    let (mut ly, mut ry) = (y, y);
    for b in &left {
        ly = b.draw(s, MARGIN, ly);
    }
    for b in &right {
        ry = b.draw(s, MARGIN + col_w + 20.0, ry);
    }
    y = ly.max(ry) + 8.0;
    layout::hline(s, MARGIN, y, CONTENT_W, GREY);
    y += 6.0;
    y = Block::fit(small, &t(lang, &lb::SUBJECT), CONTENT_W, 1, 6.0).draw(s, MARGIN, y);
    y = Block::fit(name, &n.subject, CONTENT_W, 3, 8.0).draw(s, MARGIN, y) + 10.0;
    Ok(y)
}

fn continuation_header(s: &mut Surface<'_>, n: &NoticeInput, lang: Language) -> f32 {
    let Ok(f) = fonts() else { return MARGIN };
    let st = Style::new(&f.regular, 8.0).color(GREY);
    let line = format!(
        "{} — {} ({})",
        t(lang, &lb::TITLE),
        n.ec_name,
        t(lang, &lb::CONTINUED)
    );
    let b = Block::fit(st, &line, CONTENT_W, 2, 6.0);
    let y = b.draw(s, MARGIN, MARGIN);
    layout::hline(s, MARGIN, y + 3.0, CONTENT_W, GREY);
    y + 12.0
}

fn summary_blocks(n: &NoticeInput, lang: Language, f: &'static layout::Fonts) -> Vec<Block> {
    let w = CONTENT_W - 2.0 * PAD;
    let label = Style::new(&f.bold, 8.0).color(BLUE);
    let text = Style::new(&f.regular, 8.0);
    let big = Style::new(&f.bold, 13.0);
    let mut out = vec![Block::fit(label, &t(lang, &lb::HOW_MUCH), w, 1, 6.0)];
    let single = n.options.iter().find(|o| o.kind == OptionKind::Single);
    let installments: Vec<&NoticeOption> = n
        .options
        .iter()
        .filter(|o| o.kind != OptionKind::Single)
        .collect();
    let main = single.or(installments.first().copied());
    if let Some(o) = single {
        out.push(Block::fit(
            big,
            &format!(
                "{} {} {}",
                format_euro(o.amount_cents),
                t(lang, &lb::BY),
                o.due_date.format("%d/%m/%Y")
            ),
            w,
            2,
            8.0,
        ));
    } else if let Some(o) = main {
        let total: i64 = installments.iter().map(|i| i.amount_cents).sum();
        let last = installments
            .iter()
            .map(|i| i.due_date)
            .max()
            .unwrap_or(o.due_date);
        out.push(Block::fit(
            big,
            &format!(
                "{} {} {}",
                format_euro(total),
                t(lang, &lb::BY),
                last.format("%d/%m/%Y")
            ),
            w,
            2,
            8.0,
        ));
    }
    if !installments.is_empty() {
        let l = if single.is_some() {
            &lb::PLAN_TEXT
        } else {
            &lb::PLAN_ONLY_TEXT
        };
        out.push(Block::fit(text, &t(lang, l), w, 3, 6.5));
    }
    out.push(Block::fit(label, &t(lang, &lb::WHERE), w, 1, 6.0));
    let where_text = match lang {
        Language::It => lb::WHERE_TEXT.0.to_owned(),
        Language::ItDe => format!("{}\n{}", lb::WHERE_TEXT.0, lb::WHERE_TEXT.1),
    };
    out.push(Block::fit(text, &where_text, w, 8, 6.5));
    out
}

type DrawFn<'a> = Box<dyn Fn(&mut Surface<'_>, f32) -> Result<f32, DocumentError> + 'a>;

fn option_title(o: &NoticeOption, lang: Language) -> String {
    match o.kind {
        OptionKind::Single => t(lang, &lb::SINGLE),
        OptionKind::Installment { number, of } => match lang {
            Language::It => format!("{} {number} {} {of}", lb::INSTALLMENT.0, lb::OF.0),
            Language::ItDe => format!(
                "{} {number} {} {of} / {} {number} {} {of}",
                lb::INSTALLMENT.0,
                lb::OF.0,
                lb::INSTALLMENT.1,
                lb::OF.1
            ),
        },
    }
}

fn option_box<'a>(
    n: &'a NoticeInput,
    o: &'a NoticeOption,
    lang: Language,
) -> Result<(f32, DrawFn<'a>), DocumentError> {
    let f = fonts()?;
    let text_w = CONTENT_W - CODE - 3.0 * PAD;
    let small = Style::new(&f.regular, 7.0).color(GREY);
    let mut blocks = vec![
        Block::fit(
            Style::new(&f.bold, 10.0).color(BLUE),
            &option_title(o, lang),
            text_w,
            1,
            7.0,
        ),
        Block::fit(
            Style::new(&f.bold, 14.0),
            &format!(
                "{} {} {}",
                format_euro(o.amount_cents),
                t(lang, &lb::BY),
                o.due_date.format("%d/%m/%Y")
            ),
            text_w,
            1,
            9.0,
        ),
    ];
    if !o.description.trim().is_empty() {
        blocks.push(Block::fit(
            Style::new(&f.regular, 9.0),
            &o.description,
            text_w,
            3,
            7.0,
        ));
    }
    blocks.push(Block::fit(
        small,
        &t(lang, &lb::NOTICE_CODE),
        text_w,
        1,
        6.0,
    ));
    blocks.push(Block::fit(
        Style::new(&f.mono, 12.0),
        &format_notice_number(&o.nav),
        text_w,
        1,
        8.0,
    ));
    blocks.push(Block::fit(small, &t(lang, &lb::EC_CF), text_w, 1, 6.0));
    blocks.push(Block::fit(
        Style::new(&f.mono, 10.0),
        &n.ec_fiscal_code,
        text_w,
        1,
        8.0,
    ));
    if let Some(cbill) = n.cbill.as_deref().filter(|c| !c.trim().is_empty()) {
        blocks.push(Block::fit(small, &t(lang, &lb::CBILL), text_w, 1, 6.0));
        blocks.push(Block::fit(Style::new(&f.mono, 10.0), cbill, text_w, 1, 8.0));
    }
    let text_h: f32 = blocks.iter().map(Block::height).sum();
    let h = text_h.max(CODE) + 2.0 * PAD;
    let payload = qr_payload(&o.nav, &n.ec_fiscal_code, o.amount_cents)?;
    let draw = move |s: &mut Surface<'_>, y: f32| -> Result<f32, DocumentError> {
        layout::rect_stroke(s, MARGIN, y, CONTENT_W, h, BLUE, 1.0);
        let mut ty = y + PAD;
        for b in &blocks {
            ty = b.draw(s, MARGIN + PAD, ty);
        }
        layout::qr(s, MARGIN + CONTENT_W - PAD - CODE, y + PAD, CODE, &payload)?;
        Ok(y + h)
    };
    Ok((h, Box::new(draw)))
}

fn postal_box<'a>(
    n: &'a NoticeInput,
    o: &'a NoticeOption,
    account: &'a str,
    lang: Language,
) -> Result<(f32, DrawFn<'a>), DocumentError> {
    let f = fonts()?;
    let text_w = CONTENT_W - CODE - 3.0 * PAD;
    let small = Style::new(&f.regular, 7.0).color(GREY);
    let value = Style::new(&f.regular, 9.0);
    let mono = Style::new(&f.mono, 10.0);
    let causale = if o.description.trim().is_empty() {
        n.subject.as_str()
    } else {
        o.description.as_str()
    };
    let blocks = vec![
        Block::fit(
            Style::new(&f.bold, 10.0).color(BLUE),
            &format!(
                "{} — BancoPosta — {}",
                t(lang, &lb::POSTAL),
                option_title(o, lang)
            ),
            text_w,
            2,
            7.0,
        ),
        Block::fit(
            small,
            &format!(
                "{}   ·   {}",
                t(lang, &lb::POSTAL_ACCOUNT),
                t(lang, &lb::AMOUNT)
            ),
            text_w,
            1,
            6.0,
        ),
        Block::fit(
            Style::new(&f.bold, 11.0),
            &format!("{account}   ·   {}", format_euro(o.amount_cents)),
            text_w,
            1,
            8.0,
        ),
        Block::fit(small, &t(lang, &lb::HOLDER), text_w, 1, 6.0),
        Block::fit(value, &n.ec_name, text_w, 2, 7.0),
        Block::fit(small, &t(lang, &lb::CAUSALE), text_w, 1, 6.0),
        Block::fit(value, causale, text_w, 3, 7.0),
        Block::fit(
            small,
            &format!(
                "{}   ·   {}   ·   {}",
                t(lang, &lb::NOTICE_CODE),
                t(lang, &lb::TYPE),
                t(lang, &lb::EC_CF)
            ),
            text_w,
            1,
            6.0,
        ),
        Block::fit(
            mono,
            &format!(
                "{}   P.A.   {}",
                format_notice_number(&o.nav),
                n.ec_fiscal_code
            ),
            text_w,
            1,
            7.0,
        ),
        Block::fit(small, &t(lang, &lb::RECIPIENT), text_w, 1, 6.0),
        Block::fit(
            value,
            &format!("{} — {}", n.debtor.name, n.debtor.fiscal_code),
            text_w,
            2,
            7.0,
        ),
    ];
    let text_h: f32 = blocks.iter().map(Block::height).sum();
    let h = text_h.max(CODE) + 2.0 * PAD;
    let payload = datamatrix_payload(&postal_fields(n, o, account))?;
    let draw = move |s: &mut Surface<'_>, y: f32| -> Result<f32, DocumentError> {
        layout::rect_stroke(s, MARGIN, y, CONTENT_W, h, GREY, 1.0);
        let mut ty = y + PAD;
        for b in &blocks {
            ty = b.draw(s, MARGIN + PAD, ty);
        }
        layout::datamatrix(s, MARGIN + CONTENT_W - PAD - CODE, y + PAD, CODE, &payload)?;
        Ok(y + h)
    };
    Ok((h, Box::new(draw)))
}

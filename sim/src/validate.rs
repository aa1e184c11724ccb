//! XSD validation with libxml2 against the official schemas (`../shared/pagopa/schemas`).
//!
//! A SOAP message is checked twice, like `examples/validate_examples.py` does: the whole envelope
//! against `xsd-common/envelope.xsd` (whose Body is `xs:any lax`), then the single Body child, cut
//! out as its own document with the namespace declarations in scope, strictly against the schema
//! of its namespace. Embedded base64 XML (`MBDAttachment`, `xmlRendicontazione`,
//! `datiSpecificiServizioRequest` when its schema is known) is decoded and validated too.
//!
//! libxml2 schema contexts are not thread-safe and the wrapper types are not `Send`: a
//! [`Validator`] lives on one thread. [`ValidatorPool`] runs a few validator threads for async code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use base64::Engine as _;
use libxml::parser::Parser;
use libxml::schemas::{SchemaParserContext, SchemaValidationContext};

use crate::xml::{
    extract_body_child, parse_document, BodyChild, NS_FLUSSO, NS_MARCA_DA_BOLLO, NS_NODE_FOR_PA,
    NS_PA_FOR_NODE,
};

/// Environment variable naming the schemas folder.
pub const SCHEMAS_ENV: &str = "PAGOPA_SCHEMAS";

/// Where the schemas are when nothing else is said: `../shared/pagopa/schemas` from the current dir.
pub const DEFAULT_SCHEMAS_REL: &str = "../shared/pagopa/schemas";

/// Resolves the schemas folder: `--schemas DIR`, else `$PAGOPA_SCHEMAS`, else the default
/// relative to the current directory. The folder is not checked here.
pub fn resolve_schemas_dir(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os(SCHEMAS_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_SCHEMAS_REL),
    }
}

/// For tests: `$PAGOPA_SCHEMAS`, else `<workspace>/../shared/pagopa/schemas`; `None` (after a loud
/// `SKIPPED:` line on stderr and stdout) when the folder is absent.
pub fn schemas_dir_for_tests(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os(SCHEMAS_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pagopa/schemas"),
    };
    if dir.join("xsd-common/envelope.xsd").is_file() {
        Some(dir)
    } else {
        let msg = format!(
            "\nSKIPPED: {test}: pagoPA schemas not found at {} (set {SCHEMAS_ENV})",
            dir.display()
        );
        loud(&msg);
        None
    }
}

/// Writes straight to the process's stderr, bypassing the test harness's output capture, so a
/// skipped test is visible in a plain `cargo test` run. A message starting with `SKIPPED`
/// fails the test instead when `MPAY_REQUIRE_SHARED=1` (CI: the reference material must be
/// there).
#[allow(clippy::panic)] // the point: it fails the test that called it
pub fn loud(msg: &str) {
    if msg.trim_start().starts_with("SKIPPED") && require_shared() {
        panic!(
            "{} (MPAY_REQUIRE_SHARED=1: the reference material is required)",
            msg.trim()
        );
    }
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{msg}");
    let _ = err.flush();
}

/// Whether tests must fail instead of skipping when `../shared` is absent
/// (`MPAY_REQUIRE_SHARED=1`, set by `.ci/run`).
pub fn require_shared() -> bool {
    std::env::var_os("MPAY_REQUIRE_SHARED").is_some_and(|v| v == "1")
}

/// Schemas loaded, with the files they came from (relative to the schemas folder).
const REQUIRED: &[(&str, &str)] = &[
    (NS_PA_FOR_NODE, "wsdl/xsd/paForNode.xsd"),
    (NS_MARCA_DA_BOLLO, "xsd-common/MarcaDaBollo.xsd"),
];
const OPTIONAL: &[(&str, &str)] = &[
    (NS_NODE_FOR_PA, "wsdl/xsd/nodeForPa.xsd"),
    (NS_FLUSSO, "xsd-common/FlussoRiversamento_1_0_4.xsd"),
    (NS_FLUSSO, "xsd-common/FlussoRiversamento_1_0_5.xsd"),
    (
        "http://PuntoAccessoPSP.spcoop.gov.it/TassaAuto",
        "catalogo-servizi/TassaAutomobilistica_1_1_0.xsd",
    ),
];
const ENVELOPE: &str = "xsd-common/envelope.xsd";

/// Fields whose content is base64 of another XML document, validated in turn.
const B64_FIELDS: &[&str] = &[
    "MBDAttachment",
    "xmlRendicontazione",
    "datiSpecificiServizioRequest",
];

fn load_schema(path: &Path) -> Result<SchemaValidationContext, String> {
    if !path.is_file() {
        return Err(format!("schema file {} not found", path.display()));
    }
    let p = path
        .to_str()
        .ok_or_else(|| format!("schema path {} is not UTF-8", path.display()))?;
    if p.contains('\0') {
        return Err("schema path contains NUL".into());
    }
    let mut parser = SchemaParserContext::from_file(p);
    SchemaValidationContext::from_parser(&mut parser).map_err(|errs| {
        format!(
            "cannot load schema {}: {}",
            path.display(),
            errs.iter().map(err_text).collect::<Vec<_>>().join("; ")
        )
    })
}

/// Checks that a schemas folder looks right; the error says loudly what is missing.
pub fn check_schemas_dir(dir: &Path) -> Result<(), String> {
    let mut missing = Vec::new();
    for rel in std::iter::once(ENVELOPE).chain(REQUIRED.iter().map(|(_, f)| *f)) {
        if !dir.join(rel).is_file() {
            missing.push(rel);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "pagoPA schemas not found in {} (missing {}); pass --schemas DIR or set {SCHEMAS_ENV}",
            dir.display(),
            missing.join(", ")
        ))
    }
}

/// One thread's set of compiled schemas.
pub struct Validator {
    dir: PathBuf,
    envelope: SchemaValidationContext,
    by_ns: HashMap<&'static str, Vec<(&'static str, SchemaValidationContext)>>,
}

impl Validator {
    /// Compiles the schemas found in `dir` (envelope + paForNode + MarcaDaBollo required; nodeForPa,
    /// FlussoRiversamento and the TassaAuto service schema when present).
    pub fn load(dir: &Path) -> Result<Validator, String> {
        check_schemas_dir(dir)?;
        let envelope = load_schema(&dir.join(ENVELOPE))?;
        let mut by_ns: HashMap<&'static str, Vec<(&'static str, SchemaValidationContext)>> =
            HashMap::new();
        for (ns, rel) in REQUIRED {
            by_ns
                .entry(ns)
                .or_default()
                .push((rel, load_schema(&dir.join(rel))?));
        }
        for (ns, rel) in OPTIONAL {
            let p = dir.join(rel);
            if p.is_file() {
                by_ns.entry(ns).or_default().push((rel, load_schema(&p)?));
            }
        }
        Ok(Validator {
            dir: dir.to_path_buf(),
            envelope,
            by_ns,
        })
    }

    /// The schemas folder this validator was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Validates a SOAP message: envelope, then the Body child strictly, then embedded payloads.
    /// On success returns the Body child (namespace, name, standalone document).
    pub fn validate_soap(&mut self, bytes: &[u8]) -> Result<BodyChild, Vec<String>> {
        let text =
            std::str::from_utf8(bytes).map_err(|e| vec![format!("message is not UTF-8: {e}")])?;
        let doc = Parser::default()
            .parse_string(bytes)
            .map_err(|e| vec![format!("not well-formed XML: {e:?}")])?;
        let mut errors = Vec::new();
        if let Err(errs) = self.envelope.validate_document(&doc) {
            errors.extend(
                errs.iter()
                    .map(|e| format!("[envelope.xsd] {}", fmt_err(e))),
            );
        }
        let body = match extract_body_child(text) {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("[envelope] {e}"));
                return Err(errors);
            }
        };
        if let Err(errs) = self.validate_standalone(&body.document) {
            errors.extend(errs);
        }
        if errors.is_empty() {
            Ok(body)
        } else {
            Err(errors)
        }
    }

    /// Validates a standalone document strictly against the schema(s) of its root namespace
    /// (all of them must accept it), then the base64 XML payloads it carries.
    pub fn validate_standalone(&mut self, xml: &str) -> Result<(), Vec<String>> {
        let root = parse_document(xml).map_err(|e| vec![format!("not well-formed XML: {e}")])?;
        let ns = root.ns.clone().unwrap_or_default();
        let doc = Parser::default()
            .parse_string(xml.as_bytes())
            .map_err(|e| vec![format!("not well-formed XML: {e:?}")])?;
        let mut errors = Vec::new();
        match self.by_ns.get_mut(ns.as_str()) {
            None => errors.push(format!(
                "no schema for namespace {ns:?} (root element {})",
                root.name
            )),
            Some(list) => {
                for (rel, ctx) in list.iter_mut() {
                    if let Err(errs) = ctx.validate_document(&doc) {
                        let file = rel.rsplit('/').next().unwrap_or(rel);
                        errors.extend(errs.iter().map(|e| format!("[{file}] {}", fmt_err(e))));
                    }
                }
            }
        }
        // embedded payloads
        for field in B64_FIELDS {
            let mut found = Vec::new();
            root.find_all(field, &mut found);
            for el in found {
                let raw: String = el.text.chars().filter(|c| !c.is_whitespace()).collect();
                if raw.is_empty() {
                    continue;
                }
                let bytes = match base64::engine::general_purpose::STANDARD.decode(raw.as_bytes()) {
                    Ok(b) => b,
                    Err(e) => {
                        errors.push(format!("{field}: not base64: {e}"));
                        continue;
                    }
                };
                let inner = match String::from_utf8(bytes) {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push(format!("{field}: decoded payload is not UTF-8: {e}"));
                        continue;
                    }
                };
                // service-specific data whose schema we do not have is not judged
                if *field == "datiSpecificiServizioRequest" {
                    let inner_ns = parse_document(&inner)
                        .ok()
                        .and_then(|r| r.ns)
                        .unwrap_or_default();
                    if !self.by_ns.contains_key(inner_ns.as_str()) {
                        continue;
                    }
                }
                if let Err(errs) = self.validate_standalone(&inner) {
                    errors.extend(errs.into_iter().map(|e| format!("{field}(base64) -> {e}")));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn err_text(e: &libxml::error::StructuredError) -> String {
    e.message
        .as_deref()
        .unwrap_or("(no message)")
        .trim()
        .to_string()
}

fn fmt_err(e: &libxml::error::StructuredError) -> String {
    let msg = err_text(e);
    match e.line {
        Some(l) if l > 0 => format!("line {l}: {msg}"),
        _ => msg,
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<BodyChild, Vec<String>>>;

/// A few threads, each owning a [`Validator`], serving async callers.
#[derive(Clone)]
pub struct ValidatorPool {
    tx: mpsc::Sender<(Vec<u8>, Reply)>,
}

impl ValidatorPool {
    /// Starts `threads` validator threads (at least one) on the schemas in `dir`.
    pub fn start(dir: &Path, threads: usize) -> Result<ValidatorPool, String> {
        // load once here first: reports a broken folder before any thread starts
        drop(Validator::load(dir)?);
        let (tx, rx) = mpsc::channel::<(Vec<u8>, Reply)>();
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let n = threads.max(1);
        for i in 0..n {
            let rx = Arc::clone(&rx);
            let dir = dir.to_path_buf();
            let ready = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("xsd-{i}"))
                .spawn(move || {
                    let mut v = match Validator::load(&dir) {
                        Ok(v) => {
                            let _ = ready.send(Ok(()));
                            v
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok((bytes, reply)) = job else { return };
                        let _ = reply.send(v.validate_soap(&bytes));
                    }
                })
                .map_err(|e| format!("cannot start validator thread: {e}"))?;
        }
        drop(ready_tx);
        for _ in 0..n {
            ready_rx
                .recv()
                .map_err(|_| "validator thread died while loading".to_string())??;
        }
        Ok(ValidatorPool { tx })
    }

    /// Validates a SOAP message on one of the pool's threads.
    pub async fn validate_soap(&self, bytes: Vec<u8>) -> Result<BodyChild, Vec<String>> {
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        self.tx
            .send((bytes, rtx))
            .map_err(|_| vec!["validator pool is gone".to_string()])?;
        rrx.await
            .map_err(|_| vec!["validator thread died".to_string()])?
    }
}

//! The OpenAPI document, generated from the handlers and DTOs (utoipa), served at
//! `/api/openapi.json`; Swagger UI (vendored assets) at `/api/docs/`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::feeds::{self, FeedChecksumModel, FeedErrorModel, FeedModel, FeedProgressModel};
use crate::api::model::*;
use crate::api::positions;
use crate::api::receipts::{
    self, AcknowledgeModel, AnomaliesPage, AnomalyModel, MapEntry, ReceiptModel,
    ReceiptRecordModel, ReceiptTransferModel, ReceiptsPage, SubjectModel,
};
use crate::problem::{FieldError, Problem};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "ApiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(
                crate::auth::API_KEY_HEADER,
            ))),
        );
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mpay — debt positions API",
        description = "GPD-compatible debt positions of an organization (Ente Creditore). Amounts are integer euro cents. Authenticate with the organization's API key in the Ocp-Apim-Subscription-Key header.",
        version = "1.0.0"
    ),
    paths(
        positions::create,
        positions::create_bulk,
        positions::list,
        positions::get,
        positions::update,
        positions::delete,
        positions::publish,
        positions::invalidate,
        feeds::upload,
        feeds::list,
        feeds::status,
        feeds::report,
        feeds::iuv_file,
        feeds::result_zip,
        feeds::confirm,
        feeds::reject,
        receipts::list_receipts,
        receipts::get_receipt,
        receipts::list_anomalies,
        receipts::acknowledge
    ),
    components(schemas(
        PaymentPositionModel, PaymentOptionModel, TransferModel, StampModel, MapEntryModel,
        MultiplePaymentPositionModel, PaymentPositionResponse, PaymentOptionResponse,
        TransferResponse, PageInfo, PaymentPositionsInfo, MultiplePaymentPositionResponse,
        Problem, FieldError, FeedModel, FeedProgressModel, FeedErrorModel, FeedChecksumModel,
        ReceiptsPage, ReceiptRecordModel, ReceiptModel, ReceiptTransferModel, SubjectModel,
        MapEntry, AnomaliesPage, AnomalyModel, AcknowledgeModel
    )),
    modifiers(&Security),
    tags((name = "debt positions", description = "Create, read, update, publish, invalidate and delete debt positions"),
         (name = "receipts", description = "Receipts received from pagoPA (pagoPA field names, the request as received) and the anomalies they raised (double payments, differences, unknown notices, station mismatches, receipt departures), with an acknowledge action"),
         (name = "feeds", description = "Bulk debt-position feeds (MyPay/PU CSV 1.0-2.0-eng and ours): upload, status, outcome report, IUV exchange file, result.zip with the MyPay/PU compatibility copies"))
)]
pub struct ApiDoc;

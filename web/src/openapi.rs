//! The OpenAPI document, generated from the handlers and DTOs (utoipa), served at
//! `/api/openapi.json`; Swagger UI (vendored assets) at `/api/docs/`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::documents::{self, PrintSelection};
use crate::api::feeds::{self, FeedChecksumModel, FeedErrorModel, FeedModel, FeedProgressModel};
use crate::api::gpd::{
    self, AppInfo, ErrorResponse, IbanChangeModel, IbanChangeResponse, InstallmentOption,
    MultipleIupdModel, NotificationFeeModel, OptionWithPosition, PaidModel, PaymentOptionGroup,
    PaymentOptionsResponse,
};
use crate::api::model::*;
use crate::api::notifications::{self, NotificationModel, NotificationsPage};
use crate::api::positions;
use crate::api::receipts::{
    self, AcknowledgeModel, AnomaliesPage, AnomalyModel, MapEntry, ReceiptEmailModel, ReceiptModel,
    ReceiptRecordModel, ReceiptTransferModel, ReceiptsPage, SubjectModel,
};
use crate::api::reconciliation;
use crate::api::recovery::{self, RecoverRequest, RecoveryEntryModel};
use crate::api::v3::{
    self, DebtorModel, InstallmentModel, PaymentOptionModelV3, PaymentOptionResponseV3,
    PaymentPositionModelV3, PaymentPositionResponseV3, PaymentPositionsInfoV3,
};
use crate::print_jobs::PrintJobModel;
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
        description = "GPD-compatible debt positions of an organization (Ente Creditore). Amounts are integer euro cents. Authenticate with the organization's API key (or a broker-level key, optionally limited to segregation codes) in the Ocp-Apim-Subscription-Key header. v1 (`/api/v1`), v3 (`/api/v3`: alternatives as plans of installments), the v2 bulk API (`/api/v2`) and the EC-side payment-options API of SANP 3.9+ (`/api/v1/payment-options`) share one position model.",
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
        gpd::change_iban,
        gpd::get_option,
        gpd::get_position,
        gpd::paid_outside,
        gpd::pay,
        gpd::report,
        gpd::notification_fee,
        gpd::update_bulk,
        gpd::delete_bulk,
        gpd::payment_options,
        gpd::info,
        v3::create,
        v3::list,
        v3::get,
        v3::update,
        v3::delete,
        v3::publish,
        v3::invalidate,
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
        receipts::get_receipt_email,
        receipts::resend_receipt_email,
        receipts::list_anomalies,
        receipts::acknowledge,
        reconciliation::import_flow,
        recovery::recover,
        recovery::list_recovery,
        reconciliation::sync_flows,
        reconciliation::list_flows,
        reconciliation::import_statement,
        reconciliation::report,
        reconciliation::unreported,
        reconciliation::export,
        notifications::list_notifications,
        notifications::resend,
        documents::position_notice_pdf,
        documents::notice_pdf,
        documents::receipt_pdf,
        documents::create_print_job,
        documents::print_job_status,
        documents::print_job_result
    ),
    components(schemas(
        RecoverRequest, RecoveryEntryModel,
        PaymentPositionModel, PaymentOptionModel, TransferModel, StampModel, MapEntryModel,
        MultiplePaymentPositionModel, PaymentPositionResponse, PaymentOptionResponse,
        TransferResponse, PageInfo, PaymentPositionsInfo, MultiplePaymentPositionResponse,
        Problem, FieldError, FeedModel, FeedProgressModel, FeedErrorModel, FeedChecksumModel,
        ReceiptsPage, ReceiptRecordModel, ReceiptModel, ReceiptTransferModel, SubjectModel,
        MapEntry, AnomaliesPage, AnomalyModel, AcknowledgeModel, TransferStatus, AppInfo,
        ErrorResponse, IbanChangeModel, IbanChangeResponse, InstallmentOption, MultipleIupdModel,
        NotificationFeeModel, OptionWithPosition, PaidModel, PaymentOptionGroup,
        PaymentOptionsResponse, DebtorModel, InstallmentModel, PaymentOptionModelV3,
        PaymentOptionResponseV3, PaymentPositionModelV3, PaymentPositionResponseV3,
        PaymentPositionsInfoV3, NotificationModel, NotificationsPage, ReceiptEmailModel, PrintSelection, PrintJobModel
    )),
    modifiers(&Security),
    tags((name = "debt positions", description = "Create, read, update, publish, invalidate and delete debt positions"),
         (name = "debt positions v3", description = "The same positions in GPD's v3 representation: each payment option is a single solution or a plan of installments"),
         (name = "payment options", description = "Payment options by IUV or notice number, paid outside pagoPA, reported transfers, notification fee, and the payment-options API of SANP 3.9+"),
         (name = "GPD compatibility", description = "GPD's info endpoint"),
         (name = "receipts", description = "Receipts received from pagoPA (pagoPA field names, the request as received) and the anomalies they raised (double payments, differences, unknown notices, station mismatches, receipt departures), with an acknowledge action; the receipt's e-mail to its payer/debtor (state, resend)"),
         (name = "reconciliation", description = "Reporting flows (FdR) and bank statements (camt.053/054, OPI giornale di cassa) imported per organization, and the reconciliation of receipts, flows and credits with one label per line"),
         (name = "notifications", description = "What each payment notification to the Ente's own system became (signed webhook or MPay notificaPagamento): state, attempts, last error, next attempt; resend"),
         (name = "documents", description = "Payment notices (pagoPA avviso with QR codes and the Poste Data Matrix) and receipts as PDF; asynchronous mass printing of notices (202 + job id, idempotent with Idempotency-Key, progress, result.zip)"),
         (name = "feeds", description = "Bulk debt-position feeds (MyPay/PU CSV 1.0-2.0-eng and ours): upload, status, outcome report, IUV exchange file, result.zip with the MyPay/PU compatibility copies"))
)]
pub struct ApiDoc;

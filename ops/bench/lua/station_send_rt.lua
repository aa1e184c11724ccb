-- wrk script: paSendRTV2, each request a new receiptId for a different seeded notice.
--
--   wrk -s station_send_rt.lua URL -- ORG BROKER STATION FIRST THREADS
--
-- Thread t (ids 0..THREADS-1) pays notices FIRST + t, FIRST + t + THREADS, ... so no notice is
-- paid twice; the receiptId is unique per request. Every answer must be outcome OK.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local sc = dofile(dir .. "station_common.lua")

setup = sc.setup
response = sc.response
done = sc.done

local org, broker, station, first, threads = "", "", "", 0, 1
local token = ""

local BODY = '<?xml version="1.0" encoding="UTF-8"?>'
  .. '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
  .. 'xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Header/><soapenv:Body>'
  .. '<pafn:paSendRTV2Request><idPA>%s</idPA><idBrokerPA>%s</idBrokerPA><idStation>%s</idStation>'
  .. '<receipt><receiptId>%s</receiptId><noticeNumber>%s</noticeNumber><fiscalCode>%s</fiscalCode>'
  .. '<outcome>OK</outcome><creditorReferenceId>%s</creditorReferenceId><paymentAmount>120.50</paymentAmount>'
  .. '<description>TARI 2026</description><companyName>Comune di Borgo Demo</companyName>'
  .. '<debtor><uniqueIdentifier><entityUniqueIdentifierType>F</entityUniqueIdentifierType>'
  .. '<entityUniqueIdentifierValue>RSSMRA80A01H501U</entityUniqueIdentifierValue></uniqueIdentifier>'
  .. '<fullName>Mario Rossi</fullName></debtor>'
  .. '<transferList><transfer><idTransfer>1</idTransfer><transferAmount>120.50</transferAmount>'
  .. '<fiscalCodePA>%s</fiscalCodePA><companyName>Comune di Borgo Demo</companyName>'
  .. '<IBAN>IT47D0103002600000061234567</IBAN><remittanceInformation>TARI 2026</remittanceInformation>'
  .. '<transferCategory>0101108TS</transferCategory></transfer></transferList>'
  .. '<idPSP>88888888888</idPSP><pspFiscalCode>88888888888</pspFiscalCode>'
  .. '<PSPCompanyName>PSP di Prova S.p.A.</PSPCompanyName><idChannel>88888888888_01</idChannel>'
  .. '<channelDescription>app</channelDescription><paymentMethod>creditCard</paymentMethod>'
  .. '<fee>1.00</fee><primaryCiIncurredFee>0.00</primaryCiIncurredFee>'
  .. '<paymentDateTime>2026-07-02T10:20:00</paymentDateTime><applicationDate>2026-07-02</applicationDate>'
  .. '<transferDate>2026-07-03</transferDate><standIn>false</standIn></receipt>'
  .. '</pafn:paSendRTV2Request></soapenv:Body></soapenv:Envelope>'

function init(args)
  org, broker, station = args[1], args[2], args[3]
  first = tonumber(args[4] or "0") or 0
  threads = tonumber(args[5] or "1") or 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
  wrk.headers["SOAPAction"] = "paSendRTV2"
  math.randomseed(os.time() * 1000 + (id or 0))
  token = string.format("%08x", math.random(0, 0x7fffffff))
end

function request()
  local i = first + (id or 0) + sent * threads
  sent = sent + 1
  local nav = sc.nav(i)
  local receipt_id = string.format("rt%s%d%08d", token, id or 0, sent)
  return wrk.format(nil, nil, nil,
    string.format(BODY, org, broker, station, receipt_id, nav, org, string.sub(nav, 2), org))
end

-- wrk script: paVerifyPaymentNotice for random seeded notices.
--
--   wrk -s station_verify.lua URL -- ORG BROKER STATION POSITIONS
--
-- Every request asks for notice index uniform in [0, POSITIONS). Env BENCH_DELAY_MS spaces the
-- requests of each connection (rate-limited run).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local sc = dofile(dir .. "station_common.lua")

setup = sc.setup
response = sc.response
done = sc.done
if sc.delay_ms > 0 then
  delay = sc.delay
end

local org, broker, station, n = "", "", "", 1

local BODY = '<?xml version="1.0" encoding="UTF-8"?>'
  .. '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
  .. 'xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Header/><soapenv:Body>'
  .. '<pafn:paVerifyPaymentNoticeReq><idPA>%s</idPA><idBrokerPA>%s</idBrokerPA><idStation>%s</idStation>'
  .. '<qrCode><fiscalCode>%s</fiscalCode><noticeNumber>%s</noticeNumber></qrCode>'
  .. '</pafn:paVerifyPaymentNoticeReq></soapenv:Body></soapenv:Envelope>'

function init(args)
  org, broker, station = args[1], args[2], args[3]
  n = tonumber(args[4] or "1") or 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
  wrk.headers["SOAPAction"] = "paVerifyPaymentNotice"
  math.randomseed(os.time() * 1000 + (id or 0))
end

function request()
  sent = sent + 1
  local i = math.random(0, n - 1)
  return wrk.format(nil, nil, nil, string.format(BODY, org, broker, station, org, sc.nav(i)))
end

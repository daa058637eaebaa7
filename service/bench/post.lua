-- wrk script: POST the body in $BODY_FILE on every request; JSON, or with $HEADER_LENGTH the binary tensor
-- extension's body (a JSON header of that many bytes, then the tensor's bytes).
wrk.method = "POST"
local header_length = os.getenv("HEADER_LENGTH")
if header_length then
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.headers["Inference-Header-Content-Length"] = header_length
else
  wrk.headers["Content-Type"] = "application/json"
end
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = file:read("*a")
file:close()

-- wrk script: each request is PIPELINE requests for the same path, sent
-- in one write (wrk counts each response).
local depth = tonumber(os.getenv("PIPELINE") or "16")
init = function(args)
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, wrk.path)
  end
  req = table.concat(r)
end
request = function()
  return req
end

-- wrk script: POST bodies read from a file of records (4-byte big-endian length, then bytes),
-- cycling through them, so that every OHTTP request carries a fresh encapsulation (enc).
-- Usage: wrk ... -s bench/bodies.lua URL -- BODIES_FILE CONTENT_TYPE
local bodies = {}
local index = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  while true do
    local header = file:read(4)
    if not header or #header < 4 then break end
    local a, b, c, d = header:byte(1, 4)
    bodies[#bodies + 1] = file:read(((a * 256 + b) * 256 + c) * 256 + d)
  end
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[2]
end

function request()
  index = index % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[index])
end

--! include key_digest
-- In the run's Redis: a batch's payloads and TTLs for RESTORE (false for a key gone since
-- the plan), with the batch's fast digest computed from the same reads.
local strip = ARGV[1]
local out = {'', 0, 0, 0}
local hexes = {}
for _, key in ipairs(KEYS) do
  local h, n, pttl, payload = digest(key, sub(key, #strip + 1))
  if h then
    hexes[#hexes + 1] = h
    out[2], out[3] = out[2] + 1, out[3] + n
    if pttl > 0 then out[4] = out[4] + 1 end
    out[#out + 1] = payload
    out[#out + 1] = pttl > 0 and pttl or 0
  else
    out[#out + 1] = false
    out[#out + 1] = 0
  end
end
out[1] = table.concat(hexes)
return out

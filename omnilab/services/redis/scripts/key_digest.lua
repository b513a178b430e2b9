--! include unordered
-- What the fast digest and the copy share. ``digest(key, name)`` returns the key's digest
-- (SHA-1 hex of its relative name, whether it has a TTL and its serialization), the size
-- digested, its PTTL and its DUMP payload; nil for a missing key. The serialization is the
-- DUMP payload without its last 10 bytes (RDB version and CRC64, which differ between
-- server versions), except for sets and hashes in a hash table (RDB types 2 and 4, the
-- payload's first byte): their payload follows the server's own iteration order, so their
-- elements are combined by XOR instead.
local call, byte = redis.call, string.byte
local function digest(key, name)
  local payload = call('DUMP', key)
  if not payload then return nil end
  local rdb_type, body, n = byte(payload, 1)
  if rdb_type == 2 then
    body, n = unordered(call('SMEMBERS', key), false)
    body = 'set:' .. body
  elseif rdb_type == 4 then
    body, n = unordered(call('HGETALL', key), true)
    body = 'hash:' .. body
  else
    body = sub(payload, 1, -11)
    n = #body
  end
  local pttl = call('PTTL', key)
  return sha1(#name .. ':' .. name .. (pttl > 0 and 'T' or 'P') .. body), n, pttl, payload
end

-- The digest of a set's or a hash's elements whatever their order: the XOR of each
-- element's SHA-1 (elements are unique, so XOR is sound); ``unordered(items, paired)``
-- returns it in hex with the elements' size. Shared by both digests below.
local bxor, tonumber, sub, sha1 = bit.bxor, tonumber, string.sub, redis.sha1hex
local function unordered(items, paired)
  local x1, x2, n = 0, 0, 0
  local step = paired and 2 or 1
  for j = 1, #items, step do
    local e = items[j]
    if paired then e = #e .. ':' .. e .. items[j + 1] end
    local h = sha1(e)
    x1 = bxor(x1, tonumber(sub(h, 1, 8), 16))
    x2 = bxor(x2, tonumber(sub(h, 9, 16), 16))
    n = n + #e
  end
  return bit.tohex(x1) .. bit.tohex(x2), n
end

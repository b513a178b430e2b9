-- Renames of (from, to) pairs, for switching back; a missing source is counted.
local missing = 0
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i + 1])
  else
    missing = missing + 1
  end
end
return missing

-- Liveness of a waiting entry: attach, detach or touch.
-- KEYS: 1 entries
-- ARGV: 1 user, 2 op (attach|detach|touch), 3 now_ms, 4 seq (detach only)
-- Returns the entry's seq for attach, or false.
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then
  return false
end
local kind, seq, live, seen = string.match(entry, '^(%a):(%d+):(%d+):(%d+)$')
if kind ~= 'w' then
  return false
end
live, seen = tonumber(live), tonumber(seen)
local now = tonumber(ARGV[3])
if ARGV[2] == 'attach' then
  live = live + 1
elseif ARGV[2] == 'detach' then
  if seq ~= ARGV[4] then
    return false
  end
  live = math.max(live - 1, 0)
  seen = now
else
  seen = math.max(seen, now)
end
redis.call('HSET', KEYS[1], ARGV[1], 'w:' .. seq .. ':' .. live .. ':' .. seen)
return tonumber(seq)

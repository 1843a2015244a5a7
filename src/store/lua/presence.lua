-- Liveness of a waiting entry: attach, detach or touch.
-- KEYS: 1 entries, 2 epoch
-- ARGV: 1 user, 2 op (attach|detach|touch), 3 now_ms, 4 seq (detach only),
--       5 the epoch the connection was counted in (detach only; 0: unknown)
-- Returns {seq, epoch}, or false when the fan has no waiting entry (or, for
-- detach, another one).
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then
  return false
end
local kind, seq, live, seen = string.match(entry, '^(%a):(%d+):(%d+):(%d+)$')
if kind ~= 'w' then
  return false
end
local epoch = redis.call('HGET', KEYS[2], 'id') or '0'
live, seen = tonumber(live), tonumber(seen)
local now = tonumber(ARGV[3])
if ARGV[2] == 'attach' then
  live = live + 1
elseif ARGV[2] == 'detach' then
  if seq ~= ARGV[4] then
    return false
  end
  -- A connection counted before the queue was lost was never counted in
  -- the rebuilt one: its close is a sighting, nothing to uncount.
  if ARGV[5] == '0' or ARGV[5] == epoch then
    live = math.max(live - 1, 0)
  end
  seen = now
else
  seen = math.max(seen, now)
end
redis.call('HSET', KEYS[1], ARGV[1], 'w:' .. seq .. ':' .. live .. ':' .. seen)
return {seq, epoch}

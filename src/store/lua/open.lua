-- The opening (QueueStore::open): every pre-queued fan moves to the head of
-- the line in a uniformly random order, the rate's grid is anchored at the
-- sale's start, and the first fans are admitted from the new head
-- (admission.lua), all in this one step. Later pre-queue joins go to the
-- line. Fisher-Yates with the caller's random draws (below 2^40, so `%` on
-- Lua's doubles is exact), the same steps as `shuffle` in src/store/mod.rs:
-- the fans keep their spots, and take the pre-queue's join sequence numbers,
-- shuffled, as their positions. The change names only the fans in their
-- drawn order: every node knows the pre-queue's spots (ChangeKind::Opened).
-- KEYS: 1 seq, 2 version, 3 waiting, 4 prequeue, 5 epoch, 6 active,
--       7 entries, 8 recent admissions, 9 tally
-- ARGV: 1 show, 2 channel, 3 admit (0: open only), 4 capacity, 5 ttl_ms,
--       6 now_ms, 7 freed_ms, 8 the epoch the caller knows, 9 admissions per
--       minute (0: no rate), 10 starts_at_ms, then the draws
-- Returns {opened, need_draws (0|1), changes_json|false, epoch, next_at_ms}
local FIRST_DRAW = 11
local n = redis.call('ZCARD', KEYS[4])
if #ARGV - FIRST_DRAW + 1 < n then
  return {n, 1, false, 0, 0}
end
local epoch = epoch_init(KEYS[5], KEYS[1])
redis.call('HSET', KEYS[5], 'opened', 1)
local parts = {}
if n > 0 then
  local pre = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
  local fans, positions = {}, {}
  for i = 1, #pre, 2 do
    fans[#fans + 1] = pre[i]
    positions[#positions + 1] = pre[i + 1]
  end
  local k = FIRST_DRAW
  for i = n - 1, 1, -1 do
    local j = tonumber(ARGV[k]) % (i + 1)
    k = k + 1
    fans[i + 1], fans[j + 1] = fans[j + 1], fans[i + 1]
  end
  local order = {}
  -- ZADD in batches: one call per 500 fans, not one per fan.
  local batch = {}
  for i = 1, n do
    batch[#batch + 1] = positions[i]
    batch[#batch + 1] = fans[i]
    if #batch == 1000 or i == n then
      redis.call('ZADD', KEYS[3], unpack(batch))
      batch = {}
    end
    order[i] = fans[i]
  end
  redis.call('DEL', KEYS[4])
  local v = redis.call('INCR', KEYS[2])
  parts[1] = '{"v":' .. v .. ',"k":"o","o":[' .. table.concat(order, ',') .. ']}'
end
-- An opening that admits: the grid's first slot is the start, its slots
-- owed (RatePace::anchor).
local anchor = tonumber(ARGV[10])
if ARGV[3] == '1' and anchor > tonumber(redis.call('HGET', KEYS[5], 'next_slot') or '0') then
  redis.call('HSET', KEYS[5], 'next_slot', string.format('%.3f', anchor), 'owed', 1)
end
local next_at = 0
if ARGV[3] == '1' then
  -- The admissions are decided now, at the end of the shuffle (half a
  -- second after the request was sent at 100,000 fans): the store's clock
  -- says when, so the slots the shuffle took are made up in this step.
  local t = redis.call('TIME')
  local now = math.max(tonumber(ARGV[6]),
    tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  local changes = {}
  epoch, next_at = admit_from_head(
    {ver = KEYS[2], waiting = KEYS[3], active = KEYS[6], entries = KEYS[7],
     epoch = KEYS[5], prequeue = KEYS[4], recent = KEYS[8], tally = KEYS[9]},
    {capacity = tonumber(ARGV[4]), ttl = tonumber(ARGV[5]), now = now,
     freed = tonumber(ARGV[7]), known = tonumber(ARGV[8]), rate = tonumber(ARGV[9])},
    changes)
  for _, c in ipairs(changes) do
    parts[#parts + 1] = encode(c)
  end
end
if #parts == 0 then
  return {n, 0, false, int(epoch), int(next_at)}
end
local msg = '{"show":' .. ARGV[1] .. ',"e":' .. int(epoch) .. ',"changes":['
  .. table.concat(parts, ',') .. ']}'
redis.call('PUBLISH', ARGV[2], msg)
return {n, 0, msg, int(epoch), int(next_at)}

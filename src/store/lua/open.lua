-- The opening (QueueStore::open): the pre-queue, already in the order drawn
-- as fans joined (join.lua), moves to the head of the line with the
-- positions the draw gave them, the rate's grid is anchored at the sale's
-- start, and the first fans are admitted from the new head (admission.lua),
-- all in this one step. Later pre-queue joins go to the line. Moving the
-- pre-queue is one command whatever its length (a RENAME into an empty
-- line), and the change carries nothing else: every node followed the draw.
-- KEYS: 1 seq, 2 version, 3 waiting, 4 prequeue, 5 epoch, 6 active,
--       7 entries, 8 recent admissions, 9 tally
-- ARGV: 1 show, 2 channel, 3 admit (0: open only), 4 capacity, 5 ttl_ms,
--       6 now_ms, 7 freed_ms, 8 the epoch the caller knows, 9 admissions per
--       minute (0: no rate), 10 starts_at_ms
-- Returns {opened, changes_json|false, epoch, next_at_ms}
local n = redis.call('ZCARD', KEYS[4])
local epoch = epoch_init(KEYS[5], KEYS[1])
redis.call('HSET', KEYS[5], 'opened', 1)
local parts = {}
if n > 0 then
  if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('RENAME', KEYS[4], KEYS[3])
  else
    redis.call('ZUNIONSTORE', KEYS[3], 2, KEYS[3], KEYS[4])
    redis.call('DEL', KEYS[4])
  end
  local v = redis.call('INCR', KEYS[2])
  parts[1] = '{"v":' .. v .. ',"k":"o"}'
end
-- An opening that admits: the grid's first slot is the start, its slots
-- owed (RatePace::anchor).
local anchor = tonumber(ARGV[10])
if ARGV[3] == '1' and anchor > tonumber(redis.call('HGET', KEYS[5], 'next_slot') or '0') then
  redis.call('HSET', KEYS[5], 'next_slot', string.format('%.3f', anchor), 'owed', 1)
end
local next_at = 0
if ARGV[3] == '1' then
  -- The admissions are decided now: the store's clock says when, if it is
  -- later than the request's (the slots since the start are made up in
  -- this step).
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
  return {n, false, int(epoch), int(next_at)}
end
local msg = '{"show":' .. ARGV[1] .. ',"e":' .. int(epoch) .. ',"changes":['
  .. table.concat(parts, ',') .. ']}'
redis.call('PUBLISH', ARGV[2], msg)
return {n, msg, int(epoch), int(next_at)}

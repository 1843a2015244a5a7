-- Appends a fan to the waiting line (or the pre-queue), or finds the spot
-- they hold; then, when asked (the show is open), admits from the head as
-- admit.lua does, in the same step; answers the fan's entry and place in
-- line after both, so the answer is the store's truth at that moment.
-- KEYS: 1 seq, 2 version, 3 waiting (zset position->user), 4 entries (hash),
--       5 ended (hash), 6 epoch, 7 prequeue (zset seq->user), 8 active,
--       9 recent admissions, 10 tally, 11 the demand ranking
-- ARGV: 1 user, 2 now_ms, 3 show, 4 channel, 5 mode (line|prequeue),
--       6 the draw (below 2^40) that places a pre-queue join, 7 admit (0|1),
--       then admit.lua's: 8 capacity, 9 ttl_ms, 10 freed_ms, 11 the epoch
--       the caller knows, 12 admissions per minute
-- Returns {created (0|1), entry, changes_json|false, rank (0: not in the
-- line), epoch, next_at_ms, unopened}
-- A pre-queue join after the opening (a node whose clock is a moment behind)
-- goes to the line. A pre-queue join is one step of the pre-queue's draw
-- (draw_place in epoch.lua), the new place at the end the fan's seq.
local user = ARGV[1]
local now = tonumber(ARGV[2])
local changes = {}
local created = 0
local epoch = epoch_init(KEYS[6], KEYS[1])
if not redis.call('HGET', KEYS[4], user) then
  created = 1
  local seq = int(redis.call('INCR', KEYS[1]))
  local prequeued = ARGV[5] == 'prequeue' and not redis.call('HGET', KEYS[6], 'opened')
  local pos, displaced = nil, nil
  if prequeued then
    pos, displaced = draw_place(KEYS[7], user, seq, ARGV[6])
  else
    redis.call('ZADD', KEYS[3], seq, user)
  end
  redis.call('HSET', KEYS[4], user, 'w:' .. seq .. ':0:' .. ARGV[2])
  redis.call('HDEL', KEYS[5], user)
  local v = redis.call('INCR', KEYS[2])
  changes[1] = {v = v, k = 'j', u = tonumber(user), seq = seq, q = prequeued and 1 or 0,
    p = pos, d = displaced and tonumber(displaced), dp = displaced and seq}
end
local next_at, unopened = 0, 0
if ARGV[7] == '1' then
  epoch, next_at, unopened = admit_from_head(
    {ver = KEYS[2], waiting = KEYS[3], active = KEYS[8], entries = KEYS[4],
     epoch = KEYS[6], prequeue = KEYS[7], recent = KEYS[9], tally = KEYS[10]},
    {capacity = tonumber(ARGV[8]), ttl = tonumber(ARGV[9]), now = now,
     freed = tonumber(ARGV[10]), known = tonumber(ARGV[11]), rate = tonumber(ARGV[12])},
    changes)
end
if created == 1 then
  rank_demand(KEYS[11], ARGV[3], KEYS[3], KEYS[7], KEYS[8])
end
local msg = false
if #changes > 0 then
  msg = encode({show = tonumber(ARGV[3]), e = epoch, changes = changes})
  redis.call('PUBLISH', ARGV[4], msg)
end
local rank = redis.call('ZRANK', KEYS[3], user)
rank = rank and rank + 1 or 0
return {created, redis.call('HGET', KEYS[4], user), msg, rank, int(epoch), int(next_at), unopened}

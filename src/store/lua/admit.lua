-- Moves fans from the head of the waiting line to active until `capacity`
-- are active, no faster than the admission rate (admission.lua).
-- KEYS: 1 version, 2 waiting, 3 active (zset user->until), 4 entries, 5 epoch,
--       6 prequeue, 7 recent admissions (list, newest first), 8 tally (hash)
-- ARGV: 1 capacity, 2 ttl_ms, 3 now_ms, 4 show, 5 channel, 6 freed_ms,
--       7 the epoch the caller knows (0: none), 8 admissions per minute (0: no rate)
-- Returns {epoch, changes_json|false, next_at_ms (0: none), unopened (0|1)}.
local changes = {}
local epoch, next_at, unopened = admit_from_head(
  {ver = KEYS[1], waiting = KEYS[2], active = KEYS[3], entries = KEYS[4],
   epoch = KEYS[5], prequeue = KEYS[6], recent = KEYS[7], tally = KEYS[8]},
  {capacity = tonumber(ARGV[1]), ttl = tonumber(ARGV[2]), now = tonumber(ARGV[3]),
   freed = tonumber(ARGV[6]), known = tonumber(ARGV[7]), rate = tonumber(ARGV[8])},
  changes)
if #changes == 0 then
  return {int(epoch), false, int(next_at), unopened}
end
local msg = encode({show = tonumber(ARGV[4]), e = epoch, changes = changes})
redis.call('PUBLISH', ARGV[5], msg)
return {int(epoch), msg, int(next_at), 0}

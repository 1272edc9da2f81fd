-- post.lua - wrk script for the SMIS benchmarks (bench/run.sh).
--
-- wrk -s bench/post.lua URL -- key=value ...
--
--   target=smisd      POST /v1/messages through smisd (the default)
--   target=ringring   POST /v1/message straight at ringring-sim, the body
--                     the ringring plugin sends (the baseline)
--   target=govapp     the two GovApp calls govapp_first makes per message,
--                     alternately, straight at govapp-sim (the baseline);
--                     needs govapp_lookup= and govapp_send= files holding
--                     "METHOD PATH" on line 1 and the body after it, with
--                     {phone} and {message_id} placeholders
--                     (bench/govapp_calls.py writes them)
--   strategy=NAME     smisd strategy (default sms_only)
--   auth=TOKEN        Authorization: Bearer TOKEN (smisd, govapp)
--   apikey=KEY        ringring apiKey
--   first=NUMBER      first recipient, E.164 without '+' (default 32470100000)
--   recipients=N      recipients rotate over first .. first+N-1 (default 1000)
--   threads=T         wrk's -t (to split the recipients and the rate)
--   rate=R            pace the run to about R requests/s in total; without
--                     it every connection sends as soon as it is answered
--                     (closed loop)
--
-- Pacing: each wrk thread keeps one schedule of evenly spaced send slots
-- shared by its connections; delay() hands a connection the next free slot.
-- wrk measures latency from the actual send, so a run that cannot keep up
-- shows as a lower rate, not as queueing delay (check the achieved rate).
--
-- done() prints one line "BENCH key=value ..." that run.sh parses.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
	ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
	return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local opt = {}
local counter = 0
local interval, next_slot = nil, nil
local govapp = nil
local smisd_requests, next_request = nil, 0
-- Message ids must not repeat across runs against the same govapp-sim.
local run_id = string.format("%06d", os.time() % 1000000)

local function read_call(path)
	local f = assert(io.open(path, "r"), "cannot open " .. path)
	local first = f:read("*l")
	local body = f:read("*a")
	f:close()
	local method, p = first:match("^(%S+)%s+(%S+)")
	return { method = method, path = p, body = body }
end

local function paced_delay()
	local t = now_ms()
	if not next_slot or next_slot < t - 1000 then
		-- Start, or more than a second behind: do not burst to catch up.
		next_slot = t
	end
	next_slot = next_slot + interval
	local d = next_slot - t
	if d < 0 then d = 0 end
	return math.floor(d)
end

-- Requests to smisd, made once in init(): one per recipient of this
-- thread's part of the range, sent in turn. wrk shares the 2 CPUs with
-- smisd and the simulator; formatting each request as it was sent cost it
-- 1-2 us of its ~30 us per request. smisd sees the same requests in the
-- same order as when they were made one by one (only the reference now
-- cycles with the recipients).
local function make_smisd_requests()
	local per_thread = math.floor(opt.recipients / tonumber(opt.threads or "1"))
	smisd_requests = {}
	for i = 0, math.max(per_thread, 1) - 1 do
		local n = opt.first + (counter + i) % opt.recipients
		local body = string.format(
			'{"recipient":"+%d","strategy":"%s","reference":"bench-%d",'
			.. '"content":{"nl":{"title":"Uw document","body":"Uw document is klaar."}}}',
			n, opt.strategy, counter + i)
		smisd_requests[i + 1] = wrk.format("POST", "/v1/messages", nil, body)
	end
end

local thread_index = 0
function setup(thread)
	thread:set("thread_id", thread_index)
	thread_index = thread_index + 1
end

function init(args)
	for _, a in ipairs(args) do
		local k, v = a:match("^([%w_]+)=(.*)$")
		if k then opt[k] = v end
	end
	opt.target = opt.target or "smisd"
	opt.strategy = opt.strategy or "sms_only"
	opt.first = tonumber(opt.first or "32470100000")
	opt.recipients = tonumber(opt.recipients or "1000")
	-- Threads start in different parts of the range, so that a number is
	-- reused only once every thread has gone through its part.
	counter = (thread_id or 0) * math.floor(opt.recipients / tonumber(opt.threads or "1"))
	if opt.rate then
		local per_thread = tonumber(opt.rate) / tonumber(opt.threads or "1")
		interval = 1000.0 / per_thread
		-- wrk looks for a global delay() after init(): defining it only
		-- when pacing keeps closed-loop runs free of the timer.
		delay = paced_delay
	end
	wrk.headers["Content-Type"] = "application/json"
	if opt.auth then
		wrk.headers["Authorization"] = "Bearer " .. opt.auth
	end
	if opt.target == "govapp" then
		govapp = { read_call(opt.govapp_lookup), read_call(opt.govapp_send) }
	elseif opt.target == "smisd" then
		make_smisd_requests()
	end
end

local function next_number()
	local n = opt.first + (counter % opt.recipients)
	counter = counter + 1
	return n
end

function request()
	if smisd_requests then
		next_request = next_request % #smisd_requests + 1
		return smisd_requests[next_request]
	end
	local n = next_number()
	if opt.target == "ringring" then
		local body = string.format(
			'{"apiKey":"%s","to":"%d","message":"Uw document\\nUw document is klaar.",'
			.. '"reference":"msg_01BENCH%018d","senderId":"SMISBench","messageEncoding":"Auto"}',
			opt.apikey or "", n, counter)
		return wrk.format("POST", "/v1/message", nil, body)
	elseif opt.target == "govapp" then
		local c = govapp[(counter % 2) + 1]
		local body = c.body:gsub("{phone}", "+" .. n)
		body = body:gsub("{message_id}", string.format("msg_B%s%d%011d", run_id, thread_id or 0, counter))
		return wrk.format(c.method, c.path, nil, body)
	end
end


function done(summary, latency, requests)
	local e = summary.errors
	local secs = summary.duration / 1e6
	-- Answers with a status >= 400 count as errors.status in wrk.
	io.write(string.format(
		"BENCH requests=%d duration_us=%d rps=%.1f ok_rps=%.1f "
		.. "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f "
		.. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
		summary.requests, summary.duration,
		summary.requests / secs, (summary.requests - e.status) / secs,
		latency:percentile(50) / 1000, latency:percentile(90) / 1000,
		latency:percentile(99) / 1000, latency.max / 1000,
		e.connect, e.read, e.write, e.status, e.timeout))
end

// `siesta serve` end to end: the real binary on the tiny preset (CPU), the real curl as client.
// OpenAI endpoints (completions with and without streaming, models, health, metrics), 400s that
// name the field, the vLLM dev endpoints (sleep/wake/is_sleeping/reset_prefix_cache) that exist
// only with SIESTA_SERVER_DEV_MODE=1 and --enable-sleep-mode, 503 while asleep, signals.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <thread>

#include "run_folder.hpp"
#include "serve_fixture.hpp"

using namespace siesta::test;

namespace {

const std::vector<std::string> kDevEnv = {"SIESTA_SERVER_DEV_MODE=1"};

std::vector<std::string> with(std::vector<std::string> args, std::initializer_list<const char*> more) {
  for (const char* m : more) args.emplace_back(m);
  return args;
}

// A greedy request whose length does not depend on where eos happens to come.
json::object greedy(const std::string& prompt, int max_tokens = 8) {
  return {{"model", "tiny"},   {"prompt", prompt},    {"max_tokens", max_tokens},
          {"temperature", 0},  {"ignore_eos", true}};
}

std::string first_text(const json::value& v) {
  return std::string(v.at("choices").at(0).at("text").as_string());
}

// The error object of an OpenAI error body, after checking its shape.
json::object error_of(const HttpResult& r) {
  json::value v = r.json();
  if (!v.is_object() || !v.as_object().contains("error")) {
    ADD_FAILURE() << "not an OpenAI error body: " << r.body;
    return {};
  }
  const auto& e = v.at("error").as_object();
  EXPECT_TRUE(e.at("message").is_string()) << r.body;
  EXPECT_EQ(e.at("code").to_number<int64_t>(), r.status) << r.body;
  return e;
}

std::string message_of(const HttpResult& r) {
  auto e = error_of(r);
  return e.contains("message") ? std::string(e.at("message").as_string()) : "";
}

// data: lines of a server-sent event stream, without the "data: " prefix.
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    std::string line = body.substr(pos, end - pos);
    if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
    else EXPECT_TRUE(line.empty()) << "unexpected SSE line: " << line;
    pos = end + 1;
  }
  return out;
}

// The value of an unlabelled Prometheus sample, or of the first line starting with `series`.
double metric(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while ((pos = text.find(series, pos)) != std::string::npos) {
    bool line_start = pos == 0 || text[pos - 1] == '\n';
    size_t after = pos + series.size();
    if (line_start && after < text.size() && text[after] == ' ')
      return std::stod(text.substr(after + 1));
    pos = after;
  }
  ADD_FAILURE() << "no sample " << series << " in:\n" << text;
  return -1;
}

}  // namespace

TEST(ServeE2E, CompletionIsOpenAiShapedAndGreedyIsDeterministic) {
  ServerProcess s;
  ASSERT_TRUE(s.start(tiny_server_args()));
  EXPECT_NE(s.out().find("listening on http://127.0.0.1:"), std::string::npos)
      << "the default bind address must be 127.0.0.1: " << s.out();

  auto r = post_json(s, "/v1/completions", greedy("The quick brown fox", 8));
  ASSERT_EQ(r.status, 200) << r.body;
  json::value v = r.json();
  EXPECT_EQ(v.at("object").as_string(), "text_completion");
  EXPECT_EQ(v.at("model").as_string(), "tiny");
  EXPECT_EQ(v.at("id").as_string().subview().substr(0, 5), "cmpl-");
  ASSERT_EQ(v.at("choices").as_array().size(), 1u);
  const auto& c = v.at("choices").at(0);
  EXPECT_EQ(c.at("index").to_number<int64_t>(), 0);
  EXPECT_EQ(c.at("finish_reason").as_string(), "length");
  EXPECT_TRUE(c.at("logprobs").is_null());
  EXPECT_EQ(v.at("usage").at("prompt_tokens").to_number<int64_t>(), 19);   // bytes of the prompt
  EXPECT_EQ(v.at("usage").at("completion_tokens").to_number<int64_t>(), 8);
  EXPECT_EQ(v.at("usage").at("total_tokens").to_number<int64_t>(), 27);

  auto again = post_json(s, "/v1/completions", greedy("The quick brown fox", 8));
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(first_text(again.json()), first_text(v)) << "greedy decoding must be deterministic";

  // A prompt given as token ids is the same prompt.
  json::object ids = greedy("", 8);
  json::array toks;
  for (unsigned char ch : std::string("The quick brown fox")) toks.push_back(int64_t(ch));
  ids["prompt"] = toks;
  auto by_ids = post_json(s, "/v1/completions", ids);
  ASSERT_EQ(by_ids.status, 200) << by_ids.body;
  EXPECT_EQ(first_text(by_ids.json()), first_text(v));
  EXPECT_EQ(s.stop(), 0);
}

TEST(ServeE2E, SeedNLogprobsAndStopStrings) {
  ServerProcess s;
  ASSERT_TRUE(s.start(tiny_server_args()));

  // Seeded sampling reproduces; n samples per prompt come back as p * n + s.
  json::object sampled{{"prompt", json::array{"ab", "cd"}}, {"max_tokens", 6}, {"temperature", 1.0},
                       {"top_p", 0.9}, {"top_k", 50}, {"n", 3}, {"seed", 7}, {"ignore_eos", true}};
  auto a = post_json(s, "/v1/completions", sampled);
  auto b = post_json(s, "/v1/completions", sampled);
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(b.status, 200) << b.body;
  ASSERT_EQ(a.json().at("choices").as_array().size(), 6u);
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(a.json().at("choices").at(i).at("index").to_number<int64_t>(), i);
  EXPECT_EQ(a.json().at("choices"), b.json().at("choices")) << "same seed, different samples";
  EXPECT_EQ(a.json().at("usage").at("completion_tokens").to_number<int64_t>(), 36);

  // logprobs: one entry per generated token, each a log-probability (<= 0).
  json::object lp = greedy("hello", 8);
  lp["logprobs"] = 1;
  auto l = post_json(s, "/v1/completions", lp);
  ASSERT_EQ(l.status, 200) << l.body;
  const json::value lj = l.json();
  const auto& lps = lj.at("choices").at(0).at("logprobs");
  ASSERT_EQ(lps.at("tokens").as_array().size(), 8u) << l.body;
  ASSERT_EQ(lps.at("token_logprobs").as_array().size(), 8u);
  ASSERT_EQ(lps.at("top_logprobs").as_array().size(), 8u);
  for (const auto& x : lps.at("token_logprobs").as_array()) EXPECT_LE(x.to_number<double>(), 0.0);

  // Stop string: take an ASCII token from the middle of a greedy output and stop on it; the
  // text must end right before it (the byte tokenizer makes each token one byte).
  std::string full = first_text(l.json());
  const auto& tokens = lps.at("tokens").as_array();
  int at = -1;
  for (size_t i = 1; i < tokens.size() && at < 0; ++i) {
    auto t = tokens[i].as_string();
    if (t.size() == 1 && t[0] >= 0x20 && t[0] < 0x7f) at = int(i);
  }
  if (at < 0) GTEST_SKIP() << "the greedy output of the tiny model has no ASCII token: " << full;
  std::string stop(tokens[size_t(at)].as_string());
  std::string expected;
  for (const auto& t : tokens) {
    if (t.as_string() == stop) break;
    expected += std::string(t.as_string());
  }
  json::object st = greedy("hello", 8);
  st["stop"] = json::array{stop};
  auto r = post_json(s, "/v1/completions", st);
  ASSERT_EQ(r.status, 200) << r.body;
  const json::value rj = r.json();
  const auto& c = rj.at("choices").at(0);
  EXPECT_EQ(c.at("text").as_string(), expected) << "stop " << stop << " in " << full;
  EXPECT_EQ(c.at("finish_reason").as_string(), "stop");
  EXPECT_EQ(c.at("stop_reason").as_string(), stop);
  EXPECT_EQ(s.stop(), 0);
}

TEST(ServeE2E, StreamingSendsTheSameTextAsServerSentEvents) {
  ServerProcess s;
  ASSERT_TRUE(s.start(tiny_server_args()));
  auto whole = post_json(s, "/v1/completions", greedy("stream me", 12));
  ASSERT_EQ(whole.status, 200) << whole.body;

  json::object req = greedy("stream me", 12);
  req["stream"] = true;
  req["stream_options"] = json::object{{"include_usage", true}};
  auto r = curl("POST", s.url("/v1/completions"), json::serialize(req), {"-N", "-i"});
  ASSERT_EQ(r.status, 200) << r.body;
  auto head_end = r.body.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << r.body;
  std::string head = r.body.substr(0, head_end);
  EXPECT_NE(head.find("text/event-stream"), std::string::npos) << head;
  auto events = sse_data(r.body.substr(head_end + 4));
  ASSERT_GE(events.size(), 3u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  int finishes = 0;
  int64_t usage_tokens = -1;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    json::value ev = json::parse(events[i]);
    EXPECT_EQ(ev.at("object").as_string(), "text_completion");
    if (ev.at("choices").as_array().empty()) {   // the usage chunk
      usage_tokens = ev.at("usage").at("completion_tokens").to_number<int64_t>();
      continue;
    }
    const auto& c = ev.at("choices").at(0);
    text += std::string(c.at("text").as_string());
    if (!c.at("finish_reason").is_null()) {
      ++finishes;
      EXPECT_EQ(c.at("finish_reason").as_string(), "length");
    }
  }
  EXPECT_EQ(text, first_text(whole.json())) << "streamed text differs from the whole response";
  EXPECT_EQ(finishes, 1);
  EXPECT_EQ(usage_tokens, 12);
  EXPECT_EQ(s.stop(), 0);
}

TEST(ServeE2E, ConcurrentRequestsAreBatchedAndEachGetsItsOwnAnswer) {
  ServerProcess s;
  ASSERT_TRUE(s.start(tiny_server_args()));
  const std::vector<std::string> prompts = {"alpha", "bravo", "charlie", "delta",
                                            "echo",  "foxtrot", "golf", "hotel"};
  std::vector<std::string> alone;
  for (const auto& p : prompts) {
    auto r = post_json(s, "/v1/completions", greedy(p, 16));
    ASSERT_EQ(r.status, 200) << r.body;
    alone.push_back(first_text(r.json()));
  }
  std::vector<HttpResult> together(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i)
    threads.emplace_back([&, i] { together[i] = post_json(s, "/v1/completions", greedy(prompts[i], 16)); });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(together[i].status, 200) << together[i].body;
    EXPECT_EQ(first_text(together[i].json()), alone[i]) << prompts[i];
  }
  EXPECT_EQ(s.stop(), 0);
}

TEST(ServeE2E, ModelsHealthAndPrometheusMetrics) {
  ServerProcess s;
  ASSERT_TRUE(s.start(tiny_server_args()));
  auto m = get(s, "/v1/models");
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_EQ(m.json().at("object").as_string(), "list");
  EXPECT_EQ(m.json().at("data").at(0).at("id").as_string(), "tiny");
  EXPECT_EQ(m.json().at("data").at(0).at("max_model_len").to_number<int64_t>(), 256);
  EXPECT_EQ(get(s, "/health").status, 200);

  ASSERT_EQ(post_json(s, "/v1/completions", greedy("count me", 5)).status, 200);
  ASSERT_EQ(post_json(s, "/v1/completions", json::object{{"prompt", "x"}, {"n", 0}}).status, 400);
  auto text = get(s, "/metrics");
  ASSERT_EQ(text.status, 200) << text.body;
  const std::string& t = text.body;
  EXPECT_EQ(metric(t, "siesta_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"), 1);
  EXPECT_EQ(metric(t, "siesta_requests_total{endpoint=\"/v1/completions\",status=\"400\"}"), 1);
  EXPECT_EQ(metric(t, "siesta_generation_tokens_total"), 5);
  EXPECT_EQ(metric(t, "siesta_prompt_tokens_total"), 8);
  EXPECT_EQ(metric(t, "siesta_request_success_total"), 1);
  EXPECT_EQ(metric(t, "siesta_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(metric(t, "siesta_e2e_request_latency_seconds_count"), 1);
  EXPECT_EQ(metric(t, "siesta_is_sleeping"), 0);
  EXPECT_NE(t.find("# TYPE siesta_time_to_first_token_seconds histogram"), std::string::npos) << t;
  EXPECT_NE(t.find("siesta_e2e_request_latency_seconds_bucket{le=\"+Inf\"} 1"), std::string::npos) << t;
  EXPECT_EQ(s.stop(), 0);
}

TEST(ServeE2E, BadRequestsAre400NamingTheFieldAndTheServerKeepsServing) {
  ServerProcess s;
  ASSERT_TRUE(s.start(tiny_server_args()));
  struct Case {
    std::string body, param, needle;
  };
  const std::vector<Case> cases = {
      {"{\"prompt\": \"x\", ", "", "not valid JSON"},
      {"[1, 2]", "body", "JSON object"},
      {R"({"prompt": "x", "max_token": 5})", "max_token", "unknown field 'max_token'"},
      {R"({"max_tokens": 5})", "prompt", "'prompt' is required"},
      {R"({"prompt": 5})", "prompt", "'prompt' must be"},
      {R"({"prompt": "x", "temperature": -1})", "temperature",
       "'temperature' = -1 is out of range (allowed: a finite number >= 0"},
      {R"({"prompt": "x", "top_p": 1.5})", "top_p", "'top_p' = 1.5 is out of range (allowed: 0 < top_p <= 1)"},
      {R"({"prompt": "x", "n": 0})", "n", "'n' must be in [1, 1024], got 0"},
      {R"({"prompt": "x", "max_tokens": 0})", "max_tokens", "'max_tokens' must be in [1, "},
      {R"({"prompt": "x", "logprobs": 6})", "logprobs", "'logprobs' must be in [0, 5], got 6"},
      {R"({"prompt": "x", "top_k": "5"})", "top_k", "'top_k' must be an integer, got a string"},
      {R"({"prompt": "x", "stream": 1})", "stream", "'stream' must be a boolean"},
      {R"({"prompt": [1, 2, 999]})", "prompt[2]", "'prompt[2]' must be in [0, 263], got 999"},
      {R"({"prompt": "x", "stop": [""]})", "stop", "'stop[0]' must not be empty"},
      {R"({"prompt": "x", "stream_options": {"include_usage": true}})", "stream_options",
       "only allowed with stream=true"},
  };
  for (const auto& c : cases) {
    auto r = curl("POST", s.url("/v1/completions"), c.body);
    EXPECT_EQ(r.status, 400) << c.body << " -> " << r.body;
    auto e = error_of(r);
    std::string msg = e.contains("message") ? std::string(e.at("message").as_string()) : "";
    EXPECT_NE(msg.find(c.needle), std::string::npos) << c.body << " -> " << msg;
    if (!c.param.empty()) {
      const json::value* param = e.if_contains("param");
      EXPECT_EQ(param ? *param : json::value(), json::value(c.param)) << c.body << " -> " << r.body;
    }
    EXPECT_EQ(e.contains("type") ? e.at("type") : json::value(), json::value("BadRequestError"));
  }
  // A prompt longer than the model allows.
  auto longp = post_json(s, "/v1/completions", json::object{{"prompt", std::string(400, 'a')}});
  EXPECT_EQ(longp.status, 400) << longp.body;
  EXPECT_NE(message_of(longp).find("400 tokens"), std::string::npos) << longp.body;
  // An unknown model is 404, an unknown path too (both as JSON).
  auto wrong = post_json(s, "/v1/completions", json::object{{"model", "gpt-9"}, {"prompt", "x"}});
  EXPECT_EQ(wrong.status, 404) << wrong.body;
  EXPECT_NE(message_of(wrong).find("gpt-9"), std::string::npos);
  auto nowhere = get(s, "/v1/nowhere");
  EXPECT_EQ(nowhere.status, 404);
  EXPECT_NE(message_of(nowhere).find("/v1/nowhere"), std::string::npos);
  // Still serving.
  auto ok = post_json(s, "/v1/completions", greedy("still alive", 4));
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(s.stop(), 0);
}

TEST(ServeE2E, DevEndpointsAre404WithoutDevModeAndSleepMode) {
  for (auto [args, env] : {std::pair{with(tiny_server_args(), {"--enable-sleep-mode"}),
                                     std::vector<std::string>{}},
                           std::pair{tiny_server_args(), kDevEnv}}) {
    ServerProcess s;
    ASSERT_TRUE(s.start(args, env));
    for (auto [method, path] : {std::pair{"POST", "/sleep?level=1"}, {"POST", "/wake_up"},
                                {"GET", "/is_sleeping"}, {"POST", "/reset_prefix_cache"}}) {
      auto r = curl(method, s.url(path));
      EXPECT_EQ(r.status, 404) << method << " " << path << ": " << r.body;
      EXPECT_EQ(error_of(r).at("type"), json::value("NotFoundError")) << r.body;
    }
    EXPECT_EQ(post_json(s, "/v1/completions", greedy("awake", 4)).status, 200);
    EXPECT_EQ(s.stop(), 0);
  }
}

TEST(ServeE2E, SleepLevel1Returns503UntilWokenThenTheSameGreedyOutput) {
  ServerProcess s;
  ASSERT_TRUE(s.start(with(tiny_server_args(), {"--enable-sleep-mode"}), kDevEnv));
  EXPECT_NE(s.out().find("dev endpoints enabled"), std::string::npos) << s.out();
  auto before = post_json(s, "/v1/completions", greedy("remember me", 16));
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_EQ(get(s, "/is_sleeping").json(), json::parse(R"({"is_sleeping": false})"));

  ASSERT_EQ(post(s, "/sleep?level=1").status, 200);
  EXPECT_EQ(get(s, "/is_sleeping").json(), json::parse(R"({"is_sleeping": true})"));
  EXPECT_EQ(post(s, "/sleep?level=1").status, 200) << "sleeping while asleep is a no-op (vLLM)";
  auto asleep = post_json(s, "/v1/completions", greedy("remember me", 16));
  EXPECT_EQ(asleep.status, 503) << asleep.body;
  EXPECT_NE(message_of(asleep).find("sleeping"), std::string::npos) << asleep.body;
  EXPECT_EQ(error_of(asleep).at("type"), json::value("ServiceUnavailableError"));
  EXPECT_EQ(get(s, "/health").status, 200);
  EXPECT_EQ(metric(get(s, "/metrics").body, "siesta_is_sleeping"), 1);

  // is_sleeping stays true until every tag is awake.
  ASSERT_EQ(post(s, "/wake_up?tags=weights").status, 200);
  EXPECT_EQ(get(s, "/is_sleeping").json(), json::parse(R"({"is_sleeping": true})"));
  EXPECT_EQ(post_json(s, "/v1/completions", greedy("remember me", 16)).status, 503);
  ASSERT_EQ(post(s, "/wake_up?tags=kv_cache").status, 200);
  EXPECT_EQ(get(s, "/is_sleeping").json(), json::parse(R"({"is_sleeping": false})"));

  auto after = post_json(s, "/v1/completions", greedy("remember me", 16));
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(first_text(after.json()), first_text(before.json()));

  // Both tags in one call, as repeated query parameters.
  ASSERT_EQ(post(s, "/sleep?level=1").status, 200);
  ASSERT_EQ(post(s, "/wake_up?tags=weights&tags=kv_cache").status, 200);
  EXPECT_EQ(get(s, "/is_sleeping").json(), json::parse(R"({"is_sleeping": false})"));
  auto again = post_json(s, "/v1/completions", greedy("remember me", 16));
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(first_text(again.json()), first_text(before.json()));

  EXPECT_EQ(post(s, "/reset_prefix_cache").status, 200);
  EXPECT_EQ(s.stop(), 0);
}

TEST(ServeE2E, SleepLevel2WakeRefusesGenerationUntilWeightsAreLoaded) {
  ServerProcess s;
  ASSERT_TRUE(s.start(with(tiny_server_args(), {"--enable-sleep-mode"}), kDevEnv));
  ASSERT_EQ(post_json(s, "/v1/completions", greedy("x", 4)).status, 200);
  ASSERT_EQ(post(s, "/sleep?level=2").status, 200);
  EXPECT_EQ(get(s, "/is_sleeping").json(), json::parse(R"({"is_sleeping": true})"));
  ASSERT_EQ(post(s, "/wake_up").status, 200);
  EXPECT_EQ(get(s, "/is_sleeping").json(), json::parse(R"({"is_sleeping": false})"));
  auto r = post_json(s, "/v1/completions", greedy("x", 4));
  EXPECT_EQ(r.status, 503) << r.body;
  std::string msg = message_of(r);
  EXPECT_NE(msg.find("sleep(level=2)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("update_weights() or load_weights()"), std::string::npos) << msg;
  EXPECT_EQ(metric(get(s, "/metrics").body, "siesta_weights_valid"), 0);
  EXPECT_EQ(s.stop(), 0);
}

TEST(ServeE2E, DevEndpointArgumentsAreChecked) {
  ServerProcess s;
  ASSERT_TRUE(s.start(with(tiny_server_args(), {"--enable-sleep-mode"}), kDevEnv));
  auto lvl = post(s, "/sleep?level=3");
  EXPECT_EQ(lvl.status, 400) << lvl.body;
  EXPECT_NE(message_of(lvl).find("'level' must be 1 or 2, got '3'"), std::string::npos) << lvl.body;
  auto tag = post(s, "/wake_up?tags=optimizer");
  EXPECT_EQ(tag.status, 400) << tag.body;
  EXPECT_NE(message_of(tag).find("allowed: weights, kv_cache"), std::string::npos) << tag.body;
  EXPECT_EQ(get(s, "/is_sleeping").json(), json::parse(R"({"is_sleeping": false})"));
  EXPECT_EQ(s.stop(), 0);
}

TEST(ServeE2E, ExplicitPortAndAPortInUseIsAClearError) {
  const int port = free_port();
  auto args = tiny_server_args();
  args[6] = std::to_string(port);   // --port
  ServerProcess a;
  ASSERT_TRUE(a.start(args));
  EXPECT_EQ(a.port(), port);
  EXPECT_EQ(get(a, "/health").status, 200);
  auto b = run_siesta(args, "", 60);
  EXPECT_EQ(b.exit_code, 1) << b.out << b.err;
  EXPECT_NE(b.err.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << b.err;
  EXPECT_EQ(a.stop(SIGINT), 0) << a.err();
  EXPECT_NE(a.out().find("stopped"), std::string::npos) << a.out();
}

TEST(ServeE2E, SigtermAbortsInFlightStreamsAndExitsZero) {
  ServerProcess s;
  ASSERT_TRUE(s.start(tiny_server_args()));
  // 8 prompts x 32 samples x 250 tokens take seconds here (one prompt takes ~0.5 s): the
  // signal comes while they run, and every stream must still end properly.
  json::object req{{"prompt", json::array{"a", "b", "c", "d", "e", "f", "g", "h"}},
                   {"max_tokens", 250}, {"n", 32}, {"ignore_eos", true}, {"stream", true}};
  HttpResult streamed;
  std::thread client([&] { streamed = curl("POST", s.url("/v1/completions"), json::serialize(req), {"-N"}); });
  // The signal must come while the streams run, after all 8 prompts are in the engine (each
  // waits for a step boundary to go in; a signal before the last one refuses the request with
  // 503 and aborts the others, which a fixed 300 ms sleep hit on a busy machine). From
  // /metrics: a waiting prompt is one sequence until its prefill fans it out into 32 running
  // ones, and finished prompts count as successes.
  auto prompts_in = [&] {
    std::istringstream metrics(get(s, "/metrics").body);
    double waiting = 0, running = 0, finished = 0;
    for (std::string line; std::getline(metrics, line);) {
      auto value = [&](const char* name, double& v) {
        const std::string prefix = std::string(name) + " ";
        if (line.rfind(prefix, 0) == 0) v = std::stod(line.substr(prefix.size()));
      };
      value("siesta_num_requests_waiting", waiting);
      value("siesta_num_requests_running", running);
      value("siesta_request_success_total", finished);
    }
    return finished + waiting + std::ceil(running / 32);
  };
  double in = 0;
  for (int i = 0; i < 1500 && (in = prompts_in()) < 8; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GE(in, 8) << "the request's prompts never all reached the engine";
  auto t0 = std::chrono::steady_clock::now();
  auto code = s.stop(SIGTERM, 20);
  client.join();
  EXPECT_EQ(code, 0) << s.err();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
  EXPECT_NE(s.out().find("siesta serve: stopped"), std::string::npos) << s.out();
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  auto events = sse_data(streamed.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back(), "[DONE]") << streamed.body.substr(0, 400);
  int finished = 0, aborted = 0;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    json::value ev = json::parse(events[i]);
    const auto& reason = ev.at("choices").at(0).at("finish_reason");
    if (reason.is_null()) continue;
    ++finished;
    if (reason == json::value("abort")) ++aborted;
  }
  EXPECT_EQ(finished, 8 * 32) << "every choice gets a finish_reason";
  EXPECT_GT(aborted, 0) << "the signal came after the whole request had finished?";
}

TEST(ServeE2E, BadModelIsAClearErrorAtStartup) {
  auto r = run_siesta({"serve", "--model", "/nonexistent/model", "--device", "cpu", "--port", "0"}, "", 60);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/model"), std::string::npos) << r.err;
}

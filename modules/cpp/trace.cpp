// couplet's TorchScript tracing shim (see modules/src/export/ffi.rs).
//
// tch's `CModule::create_by_tracing` traces into a fresh module without parameters: every
// tensor the traced code reads that is not an input is baked into the graph as a constant
// (and libtorch's tracer refuses tensors that require grad). These functions do what
// Python's `torch.jit.trace` does for an `nn.Module`: they register chosen tensors as
// parameters or buffers of (nested) submodules and bind them in the trace to `prim::GetAttr`
// reads of `self`, so the saved module holds them as named parameters.
//
// Every function catches C++ exceptions and returns them as a malloc'd message (NULL on
// success) that the caller frees with `couplet_free_message`.

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/normalize_ops.h>
#include <torch/csrc/jit/passes/fixup_trace_scope_blocks.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using torch::jit::Module;

struct Traced {
  Module module;
  // Every tensor bound as a parameter or buffer, with its dotted path.
  std::vector<std::pair<std::string, at::Tensor>> bound;
};

char *message(const std::string &text) {
  char *out = static_cast<char *>(std::malloc(text.size() + 1));
  if (out != nullptr) std::memcpy(out, text.c_str(), text.size() + 1);
  return out;
}

#define GUARD(...)                                    \
  try {                                               \
    __VA_ARGS__;                                           \
    return nullptr;                                   \
  } catch (const std::exception &e) {                 \
    return message(e.what());                         \
  } catch (...) {                                     \
    return message("unknown C++ exception");          \
  }

std::vector<std::string> split(const std::string &path) {
  std::vector<std::string> parts;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '.')) parts.push_back(part);
  return parts;
}

// Inserts `if a != b: raise Exception(text.format(*args))` at the graph's insert point.
void insert_check(torch::jit::Graph &graph, torch::jit::Value *a, torch::jit::Value *b, const std::string &text,
                  const std::vector<torch::jit::Value *> &args) {
  auto *differ = graph.insert(c10::aten::ne, {a, b});
  auto *check = graph.insertNode(graph.create(c10::prim::If, {differ}, 0));
  auto *raise = check->addBlock();
  check->addBlock();
  torch::jit::WithInsertPoint in(raise);
  std::vector<torch::jit::NamedValue> format{graph.insertConstant(text)};
  for (auto *arg : args) format.emplace_back(arg);
  graph.insert(c10::prim::RaiseException, {graph.insert(c10::aten::format, format)});
}

// libtorch's fused recurrent kernels (aten::lstm, gru, rnn_tanh, rnn_relu over a padded
// input) do not check that the initial state's batch matches the input's: given another, they
// read and write out of bounds. A trace fixes an initial state built from host sizes (zeros of
// the example's batch) as a constant, so calling the saved method with another batch would
// corrupt memory. Before every such kernel this inserts, for each initial-state tensor
// `[layers, B, H]`, a check of its batch against the input's that raises an exception naming
// both (a RuntimeError in Python, a c10::Error in C++) instead.
void guard_recurrent_batches(const std::shared_ptr<torch::jit::Graph> &graph, const std::string &method) {
  using torch::jit::Node;
  using torch::jit::Value;
  std::vector<Node *> kernels;
  for (auto *node : graph->nodes()) {
    auto kind = node->kind();
    if (kind != c10::aten::lstm && kind != c10::aten::gru && kind != c10::aten::rnn_tanh &&
        kind != c10::aten::rnn_relu)
      continue;
    const auto *schema = node->maybeSchema();
    if (schema != nullptr && schema->overload_name() == "input") kernels.push_back(node);
  }
  for (auto *node : kernels) {
    // (input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    auto batch_first = torch::jit::toIValue(node->input(8));
    if (!batch_first.has_value() || !batch_first->isBool())
      throw std::invalid_argument(method + ": a recurrent kernel's batch_first is not a constant");
    std::vector<Value *> states;
    if (node->kind() == c10::aten::lstm) {
      auto *list = node->input(1)->node();
      if (list->kind() != c10::prim::ListConstruct)
        throw std::invalid_argument(method + ": an LSTM kernel's initial state is not a list of tensors");
      for (auto *v : list->inputs()) states.push_back(v);
    } else {
      states.push_back(node->input(1));
    }
    torch::jit::WithInsertPoint at(node);
    auto *input_batch = graph->insert(c10::aten::size, {node->input(0), batch_first->toBool() ? 0 : 1});
    for (auto *state : states) {
      auto *state_batch = graph->insert(c10::aten::size, {state, 1});
      insert_check(*graph, state_batch, input_batch,
                   "couplet export: method '" + method +
                       "': a recurrent kernel's initial state has batch size {} (fixed when traced: it "
                       "was built from host sizes, not from the inputs) but the input has batch size {}; "
                       "call it with batch size {} or export a state built from the inputs "
                       "(couplet_attention::export::rebatch)",
                   {state_batch, input_batch, state_batch});
    }
  }
}

}  // namespace

extern "C" {

void couplet_free_message(char *m) { std::free(m); }

char *couplet_module_new(const char *class_name, void **out) {
  GUARD(*out = new Traced{Module(c10::QualifiedName(std::string("__torch__.couplet.") + class_name),
                                 std::make_shared<torch::jit::CompilationUnit>(), true),
                          {}};)
}

void couplet_module_free(void *m) { delete static_cast<Traced *>(m); }

// Registers `t` (shared, not copied) at dotted `path`, creating submodules on the way.
char *couplet_module_register(void *m, const char *path, const at::Tensor *t, int is_buffer) {
  GUARD({
    auto *traced = static_cast<Traced *>(m);
    auto parts = split(path);
    Module current = traced->module;
    std::string prefix = current.type()->name()->qualifiedName();
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      prefix += "." + parts[i];
      if (auto sub = current.find_method(parts[i]); sub.has_value())
        throw std::invalid_argument("'" + parts[i] + "' names a method");
      if (current.hasattr(parts[i])) {
        auto value = current.attr(parts[i]);
        if (!value.isModule())
          throw std::invalid_argument("'" + std::string(path) + "': '" + parts[i] +
                                      "' is a tensor, not a module");
        current = Module(value.toObject());
      } else {
        Module sub(c10::QualifiedName(prefix), current._ivalue()->compilation_unit(), true);
        current.register_module(parts[i], sub);
        current = sub;
      }
    }
    const auto &leaf = parts.back();
    if (current.hasattr(leaf)) {
      auto value = current.attr(leaf);
      if (!value.isTensor() || !value.toTensor().is_same(*t))
        throw std::invalid_argument("'" + std::string(path) + "' is already registered");
      return nullptr;
    }
    current.register_parameter(leaf, *t, is_buffer != 0);
    traced->bound.emplace_back(path, *t);
  })
}

char *couplet_trace_begin(void *m, const at::Tensor *const *inputs, int ninputs) {
  GUARD({
    auto *traced = static_cast<Traced *>(m);
    if (torch::jit::tracer::isTracing()) throw std::invalid_argument("cannot nest tracing calls");
    auto state = std::make_shared<torch::jit::tracer::TracingState>();
    torch::jit::tracer::setTracingState(state);
    auto *self = state->graph->insertInput(0, "self")->setType(traced->module._ivalue()->type());
    for (int i = 0; i < ninputs; ++i) {
      auto *value = state->graph->addInput();
      value->setType(c10::TensorType::get());
      state->setValue(*inputs[i], value);
    }
    // Bind every registered tensor to a chain of attribute reads of `self`.
    for (const auto &[path, tensor] : traced->bound) {
      auto *value = self;
      for (const auto &part : split(path)) value = state->graph->insertGetAttr(value, part);
      state->setValue(tensor, value);
    }
  })
}

void couplet_trace_abandon() {
  if (torch::jit::tracer::isTracing()) torch::jit::tracer::abandon();
}

int couplet_is_tracing() { return torch::jit::tracer::isTracing() ? 1 : 0; }

// Ends the trace with `outputs` and adds it to the module as method `name`. A graph constant
// that aliases a registered tensor (it was read through a copy such as `detach`) is an error.
// Records in the running trace a check that `t`'s dimension `dim` has its present size when
// the traced method runs, raising an exception naming `what` and both sizes otherwise.
char *couplet_trace_check_size(const at::Tensor *t, int64_t dim, const char *what) {
  GUARD({
    auto state = torch::jit::tracer::getTracingState();
    if (state == nullptr) throw std::invalid_argument("not tracing");
    auto &graph = *state->graph;
    int64_t expected = t->size(dim);
    auto *actual = graph.insert(c10::aten::size, {state->getValue(*t), dim});
    auto *wanted = graph.insertConstant(expected);
    insert_check(graph, actual, wanted,
                 std::string("couplet export: ") + what + " must have size {} in dimension " +
                     std::to_string(dim) + " (fixed when traced), got {}",
                 {wanted, actual});
  })
}

char *couplet_trace_end(void *m, const char *name, const at::Tensor *const *outputs, int noutputs) {
  GUARD({
    auto *traced = static_cast<Traced *>(m);
    auto state = torch::jit::tracer::getTracingState();
    if (state == nullptr) throw std::invalid_argument("not tracing");
    try {
      // One output is returned as is, several as a tuple (a TorchScript method has one
      // return value), as Python's torch.jit.trace does.
      std::vector<torch::jit::Value *> values;
      for (int i = 0; i < noutputs; ++i) values.push_back(state->getOutput(*outputs[i], i));
      if (values.size() == 1) {
        state->graph->registerOutput(values[0]);
      } else {
        state->graph->registerOutput(state->graph->insertNode(state->graph->createTuple(values))->output());
      }
    } catch (...) {
      torch::jit::tracer::abandon();
      throw;
    }
    torch::jit::tracer::setTracingState(nullptr);
    auto graph = state->graph;
    torch::jit::FixupTraceScopeBlocks(graph, &traced->module);
    torch::jit::NormalizeOps(graph);
    torch::jit::EliminateDeadCode(graph);
    guard_recurrent_batches(graph, name);
    for (auto *node : graph->nodes()) {
      if (node->kind() != c10::prim::Constant || !node->output()->type()->cast<c10::TensorType>())
        continue;
      auto constant = node->t(c10::attr::value);
      for (const auto &[path, tensor] : traced->bound)
        if (constant.is_alias_of(tensor))
          throw std::invalid_argument("variable '" + path +
                                      "' was read through a copy (detach, no_grad view) and would be "
                                      "frozen into the graph as a constant");
    }
    auto fn = traced->module._ivalue()->compilation_unit()->create_function(name, graph);
    traced->module.type()->addMethod(fn);
  })
}

char *couplet_module_save(void *m, const char *path) {
  GUARD(static_cast<Traced *>(m)->module.save(path);)
}

// Serializes the module to a malloc'd buffer `*data` of `*len` bytes (freed with
// `couplet_free_message`).
char *couplet_module_save_bytes(void *m, char **data, size_t *len) {
  GUARD({
    std::ostringstream out;
    static_cast<Traced *>(m)->module.save(out);
    auto bytes = out.str();
    *data = static_cast<char *>(std::malloc(bytes.size() == 0 ? 1 : bytes.size()));
    if (*data == nullptr) throw std::bad_alloc();
    std::memcpy(*data, bytes.data(), bytes.size());
    *len = bytes.size();
  })
}

}  // extern "C"

#include "py_payload.hpp"

#include "gil.hpp"
#include "results.hpp"

namespace counterpoint::bindings {

Payload to_payload(py::object object) {
  PyObject* raw = object.release().ptr();
  return Payload(raw, [](void* p) { release_object(static_cast<PyObject*>(p)); });
}

py::object from_payload(const Payload& payload) {
  if (!payload) return py::none();
  return py::reinterpret_borrow<py::object>(static_cast<PyObject*>(payload.get()));
}

namespace {
py::object item_to_python(const InputItem& item) {
  if (!item.failed) return from_payload(item.value);
  return py::cast(FailedInput{from_payload(item.value)});
}
}  // namespace

py::object inputs_to_python(const Inputs& inputs) {
  if (inputs.kind != Inputs::Kind::Joined) return item_to_python(inputs.items.front());
  py::dict joined;
  for (const InputItem& item : inputs.items) {
    joined[py::str(item.name.data(), item.name.size())] = item_to_python(item);
  }
  return std::move(joined);
}

Failure failure_from(py::error_already_set& error) {
  py::object value = error.value();
  // Keep the agent's traceback on the exception users will see as __cause__.
  if (error.trace() && PyException_GetTraceback(value.ptr()) == nullptr) {
    PyException_SetTraceback(value.ptr(), error.trace().ptr());
  } else {
    Py_XDECREF(PyException_GetTraceback(value.ptr()));
  }
  std::string message = py::str(py::type::handle_of(value).attr("__name__"));
  const std::string text = py::str(value);
  if (!text.empty()) message += ": " + text;
  return Failure{std::move(message), to_payload(std::move(value))};
}

}  // namespace counterpoint::bindings
